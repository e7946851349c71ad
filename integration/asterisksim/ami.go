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
	amiQueueMax    = 65536
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
	tid    int // thread id shown in NOTICE lines

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
		c: c, conn: conn, tid: 11300 + rand.IntN(100),
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
	if s.closed || !s.authed || !(s.eventsAll || s.events[e.ami.class]) || !s.c.cfg.amiReadAllows(s.user, e.ami.class) ||
		!s.c.cfg.amiFilterAllows(s.user, e.ami.name) {
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
	if h.class != "" && !s.writeAllows(user, h.class) {
		ev := s.secBase("RequestNotAllowed", "Error", "1")
		ev.accountID = user
		ev.extra = []kv{{"RequestType", "Action: " + action}}
		ev.sessionTV = s.sessionTV()
		s.c.emitSec(ev)
		return s.write(resp(m, "Error", "Permission denied"))
	}
	return h.fn(s, m)
}

// writeAllows: an action registered with several classes ("system|call")
// runs for a user with any of them, as manager.c checks writeperm & authority.
func (s *amiSession) writeAllows(user, classes string) bool {
	for _, c := range strings.Split(classes, "|") {
		if s.c.cfg.amiWriteAllows(user, c) {
			return true
		}
	}
	return false
}

type amiAction struct {
	class string // write class needed ("a|b": either); "" for none
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
	"command":            {"command", (*amiSession).command},
	"hangup":             {"system|call", (*amiSession).hangupAction},
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
		ip, _ := hostPort(s.conn.RemoteAddr())
		if !known {
			s.c.emitNotice(s.tid, "manager.c", fmt.Sprintf("%s tried to authenticate with nonexistent user '%s'", ip, user))
		}
		s.c.emitNotice(s.tid, "manager.c", fmt.Sprintf("%s failed to authenticate as '%s'", ip, user))
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

// errClosed reports a use of a closed server.
var errClosed = errors.New("asterisksim: closed")
