package asterisksim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
)

const (
	amiBanner      = "Asterisk Call Manager/11.0.0\r\n"
	amiAuthTimeout = 30 * time.Second // manager.conf authtimeout
	amiQueueMax    = 8192
)

// amiServer is the manager interface on TCP.
type amiServer struct {
	c     *core
	ln    net.Listener
	conns *connSet
	wg    sync.WaitGroup
}

func (s *amiServer) serve(ctx context.Context) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sess := newAMISession(s.c, conn)
			sess.run(ctx)
		}()
	}
}

// amiSession is one manager connection (struct mansession).
type amiSession struct {
	c      *core
	conn   net.Conn
	id     string // "0x7f..." like the mansession_session pointer
	local  string
	remote string

	wmu sync.Mutex // held while an action runs and while events are written

	mu        sync.Mutex
	authed    bool
	user      string
	start     time.Time // sessionstart_tv, set at login
	events    map[string]bool
	eventsAll bool
	challenge string
	queue     [][]byte
	signal    chan struct{}
	unsub     func()
	closed    bool
}

func newAMISession(c *core, conn net.Conn) *amiSession {
	return &amiSession{
		c: c, conn: conn,
		id:     fmt.Sprintf("0x7f%08x%02x0", rand.Uint32(), rand.IntN(256)),
		local:  addrForm("TCP", conn.LocalAddr()),
		remote: addrForm("TCP", conn.RemoteAddr()),
		signal: make(chan struct{}, 1),
	}
}

func (s *amiSession) run(ctx context.Context) {
	defer s.close()
	if _, err := s.conn.Write([]byte(amiBanner)); err != nil {
		return
	}
	done := make(chan struct{})
	defer close(done)
	go s.writer(done)
	r := bufio.NewReaderSize(s.conn, 4096)
	for {
		s.mu.Lock()
		authed := s.authed
		s.mu.Unlock()
		if !authed {
			_ = s.conn.SetReadDeadline(time.Now().Add(amiAuthTimeout))
		} else {
			_ = s.conn.SetReadDeadline(time.Time{})
		}
		m, err := readAMIMessage(r)
		if err != nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		if !s.process(m) {
			return
		}
	}
}

func (s *amiSession) close() {
	s.mu.Lock()
	s.closed = true
	unsub := s.unsub
	s.unsub = nil
	s.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	_ = s.conn.Close()
}

// writer flushes queued events whenever no action is being answered.
func (s *amiSession) writer(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-s.signal:
		}
		s.wmu.Lock()
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, b := range q {
			if _, err := s.conn.Write(b); err != nil {
				s.wmu.Unlock()
				_ = s.conn.Close()
				return
			}
		}
		s.wmu.Unlock()
	}
}

// deliver is the hub subscriber: filter by the session's event mask and the
// user's read classes, then queue.
func (s *amiSession) deliver(e event) {
	if e.ami == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.authed || !(s.eventsAll || s.events[e.ami.class]) || !s.c.cfg.amiReadAllows(s.user, e.ami.class) {
		return
	}
	if len(s.queue) >= amiQueueMax {
		s.c.log.Warn("asterisksim: AMI event queue full, dropping event", "session", s.id, "event", e.ami.name)
		return
	}
	s.queue = append(s.queue, e.ami.render(s.c.cfg.SystemName))
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// resp builds astman_send_response_full output.
func resp(m *amiMessage, response, msg string, extra ...kv) []byte {
	var b strings.Builder
	b.WriteString("Response: " + response + "\r\n")
	if id := m.get("ActionID"); id != "" {
		b.WriteString("ActionID: " + id + "\r\n")
	}
	if msg != "" {
		b.WriteString("Message: " + msg + "\r\n")
	}
	for _, f := range extra {
		b.WriteString(f.k + ": " + f.v + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// listItem renders an event of a list reply: no Privilege, no SystemName.
func listItem(name, actionID string, fields []kv) []byte {
	var b strings.Builder
	b.WriteString("Event: " + name + "\r\n")
	if actionID != "" {
		b.WriteString("ActionID: " + actionID + "\r\n")
	}
	for _, f := range fields {
		b.WriteString(f.k + ": " + f.v + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

func (s *amiSession) write(b []byte) bool {
	_, err := s.conn.Write(b)
	return err == nil
}

// secBase fills the common AMI security event fields.
func (s *amiSession) secBase(name, severity, version string) *secEvent {
	return &secEvent{name: name, severity: severity, service: "AMI", version: version,
		hasAcct: true, sessionID: s.id, local: s.local, remote: s.remote}
}

func (s *amiSession) sessionTV() *time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := zeroTV
	if !s.start.IsZero() {
		t = s.start
	}
	return &t
}

// process handles one message; false closes the session.
func (s *amiSession) process(m *amiMessage) bool {
	if m.tooLong {
		return true // dropped silently, as manager.c does
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if m.hdrLoss {
		return s.write(resp(m, "Error", "Too many lines in message or allocation failure"))
	}
	action := m.getNonEmpty("Action")
	s.mu.Lock()
	authed, user := s.authed, s.user
	s.mu.Unlock()
	if action == "" {
		ev := s.secBase("RequestBadFormat", "Error", "1")
		ev.hasAcct, ev.tailAcct, ev.accountID = true, true, user
		ev.extra = []kv{{"RequestType", "NONE"}}
		ev.sessionTV = s.sessionTV()
		s.c.emitSec(ev)
		return s.write(resp(m, "Error", "Missing action in request"))
	}
	la := strings.ToLower(action)
	if !authed && la != "login" && la != "logoff" && la != "challenge" {
		ev := s.secBase("RequestNotAllowed", "Error", "1")
		ev.extra = []kv{{"RequestType", "Action: " + action}}
		ev.sessionTV = s.sessionTV()
		s.c.emitSec(ev)
		return s.write(resp(m, "Error", "Permission denied"))
	}
	h, ok := amiActions[la]
	if !ok {
		ev := s.secBase("RequestBadFormat", "Error", "1")
		ev.tailAcct, ev.accountID = true, user
		ev.extra = []kv{{"RequestType", "Action: " + action}}
		ev.sessionTV = s.sessionTV()
		s.c.emitSec(ev)
		return s.write(resp(m, "Error", "Invalid/unknown command: "+action+". Use Action: ListCommands to show available commands."))
	}
	if h.class != "" && !s.c.cfg.amiWriteAllows(user, h.class) {
		ev := s.secBase("RequestNotAllowed", "Error", "1")
		ev.accountID = user
		ev.extra = []kv{{"RequestType", "Action: " + action}}
		ev.sessionTV = s.sessionTV()
		s.c.emitSec(ev)
		return s.write(resp(m, "Error", "Permission denied"))
	}
	return h.fn(s, m)
}

type amiAction struct {
	class string // write class needed; "" for none
	fn    func(*amiSession, *amiMessage) bool
}

var amiActions = map[string]amiAction{
	"login":              {"", (*amiSession).login},
	"logoff":             {"", (*amiSession).logoff},
	"challenge":          {"", (*amiSession).challengeAction},
	"ping":               {"", (*amiSession).ping},
	"events":             {"", (*amiSession).eventsAction},
	"userevent":          {"user", (*amiSession).userEvent},
	"coresettings":       {"system", (*amiSession).coreSettings},
	"corestatus":         {"system", (*amiSession).coreStatus},
	"pjsipshowcontacts":  {"system", (*amiSession).showContacts},
	"pjsipshowendpoints": {"system", (*amiSession).showEndpoints},
	"pjsipshowendpoint":  {"system", (*amiSession).showEndpoint},
	"extensionstatelist": {"call", (*amiSession).extensionStateList},
	"devicestatelist":    {"call", (*amiSession).deviceStateList},
	"extensionstate":     {"call", (*amiSession).extensionState},
	"getvar":             {"call", (*amiSession).getvar},
	"originate":          {"originate", (*amiSession).originate},
}

// ---- authentication ----

func (s *amiSession) challengeAction(m *amiMessage) bool {
	if !strings.EqualFold(m.get("AuthType"), "md5") {
		return s.write(resp(m, "Error", "Must specify AuthType"))
	}
	s.mu.Lock()
	if s.challenge == "" {
		s.challenge = fmt.Sprint(rand.Int32())
	}
	ch := s.challenge
	s.mu.Unlock()
	return s.write(resp(m, "Success", "", kv{"Challenge", ch}))
}

func (s *amiSession) login(m *amiMessage) bool {
	s.mu.Lock()
	authed := s.authed
	s.mu.Unlock()
	if authed {
		return s.write(resp(m, "Success", "Already authenticated"))
	}
	user := m.get("Username")
	secret, known := s.c.cfg.AMIUsers[user]
	ok := false
	if strings.EqualFold(m.get("AuthType"), "md5") {
		s.mu.Lock()
		ch := s.challenge
		s.mu.Unlock()
		key := m.get("Key")
		switch {
		case ch == "":
			// no Challenge first: fails without a security event
		case !known:
			s.invalidAccount(user)
		default:
			expected := md5hex(ch + secret)
			if key == expected {
				ok = true
			} else {
				ev := s.secBase("ChallengeResponseFailed", "Error", "1")
				ev.extra = []kv{{"Challenge", ch}, {"Response", key}, {"ExpectedResponse", expected}}
				ev.sessionTV = s.sessionTV()
				s.c.emitSec(ev)
			}
		}
	} else {
		switch {
		case !known:
			s.invalidAccount(user)
		case m.get("Secret") != secret:
			ev := s.secBase("InvalidPassword", "Error", "2")
			ev.accountID = user
			ev.sessionTV = s.sessionTV()
			s.c.emitSec(ev)
		default:
			ok = true
		}
	}
	if !ok {
		s.c.log.Info("asterisksim: AMI login failed", "remote", s.conn.RemoteAddr().String(), "user", user)
		if d := s.c.cfg.AuthFailDelay; d > 0 {
			time.Sleep(d)
		}
		s.write(resp(m, "Error", "Authentication failed"))
		return false
	}
	now := s.c.now()
	s.mu.Lock()
	s.authed, s.user, s.start = true, user, now
	s.setEventMask(m.get("Events"), true)
	s.mu.Unlock()
	// Subscribe outside s.mu: the hub calls deliver (which takes s.mu) under its own lock.
	unsub := s.c.hub.subscribe(s.deliver)
	s.mu.Lock()
	s.unsub = unsub
	s.mu.Unlock()
	ev := s.secBase("SuccessfulAuth", "Informational", "1")
	ev.accountID = user
	ev.time = now
	ev.extra = []kv{{"UsingPassword", "0"}}
	ev.sessionTV = &now
	s.c.emitSec(ev)
	out := resp(m, "Success", "Authentication accepted")
	s.mu.Lock()
	sendBoot := s.eventsAll || s.events["system"]
	s.mu.Unlock()
	if sendBoot && s.c.cfg.amiReadAllows(user, "system") {
		s.c.mu.Lock()
		up := int(s.c.now().Sub(s.c.boot) / time.Second)
		s.c.mu.Unlock()
		out = append(out, fmt.Sprintf("Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: %d\r\nLastReload: %d\r\nStatus: Fully Booted\r\n\r\n", up, up)...)
	}
	return s.write(out)
}

func (s *amiSession) invalidAccount(user string) {
	ev := s.secBase("InvalidAccountID", "Error", "1")
	ev.accountID = user
	ev.sessionTV = s.sessionTV()
	s.c.emitSec(ev)
}

// setEventMask applies an "Events:"/"EventMask:" value; s.mu held. It
// returns -1 for an invalid mask, 0 for off, 1 for on.
func (s *amiSession) setEventMask(v string, atLogin bool) int {
	lv := strings.ToLower(strings.TrimSpace(v))
	switch {
	case lv == "" && atLogin, lv == "on", lv == "all", lv == "yes", lv == "true":
		s.eventsAll, s.events = true, nil
		return 1
	case lv == "off", lv == "no", lv == "false", lv == "none":
		s.eventsAll, s.events = false, nil
		return 0
	}
	classes := map[string]bool{}
	for _, p := range strings.Split(lv, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf", "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security", "message":
			classes[p] = true
		}
	}
	if len(classes) == 0 {
		if atLogin {
			s.eventsAll, s.events = false, nil
			return 0
		}
		return -1
	}
	s.eventsAll, s.events = false, classes
	return 1
}

func (s *amiSession) logoff(m *amiMessage) bool {
	s.write(resp(m, "Goodbye", "Thanks for all the fish."))
	return false
}

// ---- simple actions ----

func (s *amiSession) ping(m *amiMessage) bool {
	now := s.c.now()
	return s.write(resp(m, "Success", "", kv{"Ping", "Pong"}, kv{"Timestamp", fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)}))
}

func (s *amiSession) eventsAction(m *amiMessage) bool {
	s.mu.Lock()
	r := s.setEventMask(m.get("EventMask"), false)
	s.mu.Unlock()
	switch r {
	case 1:
		return s.write(resp(m, "Success", "", kv{"Events", "On"}))
	case 0:
		return s.write(resp(m, "Success", "", kv{"Events", "Off"}))
	}
	return s.write(resp(m, "Error", "Invalid event mask"))
}

func (s *amiSession) userEvent(m *amiMessage) bool {
	name := m.get("UserEvent")
	fields := []kv{{"UserEvent", name}}
	for _, l := range m.lines {
		if hasPrefixFold(l, "UserEvent:") || hasPrefixFold(l, "Action:") {
			continue
		}
		fields = append(fields, kv{"", l})
	}
	ok := s.write(resp(m, "Success", "Event Sent"))
	s.c.emit(event{ami: &amiEvent{name: "UserEvent", class: "user", fields: fields}})
	return ok
}

func hasPrefixFold(s, p string) bool { return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) }

func (s *amiSession) coreSettings(m *amiMessage) bool {
	cfg := s.c.cfg
	return s.write(resp(m, "Success", "",
		kv{"AMIversion", "11.0.0"}, kv{"AsteriskVersion", cfg.Version}, kv{"SystemName", cfg.SystemName},
		kv{"CoreMaxCalls", "0"}, kv{"CoreMaxLoadAvg", "0.000000"}, kv{"CoreRunUser", ""}, kv{"CoreRunGroup", ""},
		kv{"CoreMaxFilehandles", "0"}, kv{"CoreRealTimeEnabled", "No"}, kv{"CoreCDRenabled", "No"},
		kv{"CoreHTTPenabled", "No"}, kv{"SoundsSearchCustomDir", "No"}))
}

func (s *amiSession) coreStatus(m *amiMessage) bool {
	s.c.mu.Lock()
	boot := s.c.boot.Local()
	s.c.mu.Unlock()
	return s.write(resp(m, "Success", "",
		kv{"CoreStartupDate", boot.Format("2006-01-02")}, kv{"CoreStartupTime", boot.Format("15:04:05")},
		kv{"CoreReloadDate", boot.Format("2006-01-02")}, kv{"CoreReloadTime", boot.Format("15:04:05")},
		kv{"CoreCurrentCalls", "0"}, kv{"CoreProcessedCalls", "0"}))
}

func (s *amiSession) getvar(m *amiMessage) bool {
	v := m.get("Variable")
	if v == "" {
		return s.write(resp(m, "Error", "No variable specified"))
	}
	if ch := m.get("Channel"); ch != "" {
		return s.write(resp(m, "Error", "No such channel"))
	}
	return s.write(resp(m, "Success", "", kv{"Variable", v}, kv{"Value", ""}))
}

func (s *amiSession) originate(m *amiMessage) bool {
	if m.get("Channel") == "" {
		return s.write(resp(m, "Error", "Channel not specified"))
	}
	return s.write(resp(m, "Error", "Originate failed"))
}

// ---- lists ----

func (s *amiSession) listStart(m *amiMessage, msg string) []byte {
	return resp(m, "Success", "", kv{"EventList", "start"}, kv{"Message", msg})
}

func listComplete(name, actionID string, n int) []byte {
	return listItem(name, actionID, []kv{{"EventList", "Complete"}, {"ListItems", itoa(n)}})
}

func (s *amiSession) showContacts(m *amiMessage) bool {
	id := m.get("ActionID")
	s.c.mu.Lock()
	var items [][]byte
	for _, ep := range s.c.endpointNames() {
		ct := s.c.contacts[ep]
		if ct == nil {
			continue
		}
		items = append(items, listItem("ContactList", id, []kv{
			{"ObjectType", "contact"}, {"ObjectName", ct.AOR + ";@" + md5hex(ct.URI)},
			{"ViaAddr", ct.ViaAddr}, {"QualifyTimeout", "3.000000"}, {"Qualify2xxOnly", "false"},
			{"CallId", ct.CallID}, {"RegServer", s.c.cfg.SystemName}, {"PruneOnBoot", "no"}, {"Path", ""},
			{"Endpoint", ct.AOR}, {"ViaPort", ct.ViaPort}, {"AuthenticateQualify", "no"}, {"Uri", ct.URI},
			{"QualifyFrequency", "0"}, {"UserAgent", ct.UserAgent}, {"ExpirationTime", fmt.Sprint(ct.Expires.Unix())},
			{"OutboundProxy", ""}, {"Status", "NonQualified"}, {"RoundtripUsec", "N/A"},
		}))
	}
	s.c.mu.Unlock()
	if len(items) == 0 {
		// res_pjsip sends "No Contacts found\n": a bare LF inside the value.
		return s.write(resp(m, "Error", "No Contacts found\n"))
	}
	out := s.listStart(m, "A listing of Contacts follows, presented as ContactList events")
	for _, it := range items {
		out = append(out, it...)
	}
	out = append(out, listComplete("ContactListComplete", id, len(items))...)
	return s.write(out)
}

func (s *amiSession) showEndpoints(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "A listing of Endpoints follows, presented as EndpointList events")
	s.c.mu.Lock()
	names := s.c.endpointNames()
	for _, ep := range names {
		contacts := ""
		if ct := s.c.contacts[ep]; ct != nil {
			contacts = ep + "/" + ct.URI + ","
		}
		out = append(out, listItem("EndpointList", id, []kv{
			{"ObjectType", "endpoint"}, {"ObjectName", ep}, {"Transport", ""}, {"Aor", ep}, {"Auths", ep},
			{"OutboundAuths", ""}, {"Contacts", contacts}, {"DeviceState", devStateText(s.c.pjsip[ep])}, {"ActiveChannels", "0"},
		})...)
	}
	s.c.mu.Unlock()
	out = append(out, listComplete("EndpointListComplete", id, len(names))...)
	return s.write(out)
}

func (s *amiSession) showEndpoint(m *amiMessage) bool {
	ep := m.get("Endpoint")
	if ep == "" {
		return s.write(resp(m, "Error", "PJSIPShowEndpoint requires an endpoint name\n"))
	}
	if _, ok := s.c.cfg.Endpoints[ep]; !ok {
		return s.write(resp(m, "Error", "Unable to retrieve endpoint "+ep+"\n"))
	}
	id := m.get("ActionID")
	s.c.mu.Lock()
	st := s.c.pjsip[ep]
	s.c.mu.Unlock()
	out := resp(m, "Success", "", kv{"EventList", "start"}, kv{"Message", "Following are Events for each object associated with the Endpoint"})
	out = append(out, listItem("EndpointDetail", id, []kv{{"ObjectType", "endpoint"}, {"ObjectName", ep},
		{"Context", s.c.cfg.Context}, {"Aors", ep}, {"Auth", ep}, {"DeviceState", devStateText(st)}, {"ActiveChannels", ""}})...)
	out = append(out, listComplete("EndpointDetailComplete", id, 1)...)
	return s.write(out)
}

func (s *amiSession) extensionStateList(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "Extension Statuses will follow")
	s.c.mu.Lock()
	names := s.c.endpointNames()
	for _, ext := range names {
		st := s.c.hintStateLocked(ext)
		out = append(out, listItem("ExtensionStatus", id, s.c.extensionStatus(ext, st, "").fields)...)
	}
	s.c.mu.Unlock()
	out = append(out, listComplete("ExtensionStateListComplete", id, len(names))...)
	return s.write(out)
}

func (s *amiSession) deviceStateList(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "Device State Changes will follow")
	s.c.mu.Lock()
	devs := s.c.devicesListLocked()
	s.c.mu.Unlock()
	for _, d := range devs {
		out = append(out, listItem("DeviceStateChange", id, []kv{{"Device", d.k}, {"State", d.v}})...)
	}
	out = append(out, listComplete("DeviceStateListComplete", id, len(devs))...)
	return s.write(out)
}

func (s *amiSession) extensionState(m *amiMessage) bool {
	ext := m.get("Exten")
	if ext == "" {
		return s.write(resp(m, "Error", "Extension not specified"))
	}
	ctx := m.get("Context")
	if ctx == "" {
		ctx = "default"
	}
	s.c.mu.Lock()
	_, known := s.c.cfg.Endpoints[ext]
	status, hint := -1, ""
	if known && ctx == s.c.cfg.Context {
		status, hint = s.c.hintStateLocked(ext), s.c.hintText(ext)
	}
	s.c.mu.Unlock()
	return s.write(resp(m, "Success", "Extension Status",
		kv{"Exten", ext}, kv{"Context", ctx}, kv{"Hint", hint}, kv{"Status", itoa(status)}, kv{"StatusText", extStateText(status)}))
}

// errClosed reports a use of a closed server.
var errClosed = errors.New("asterisksim: closed")
