package ami

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The captured Events-on session, replayed after a login: every event comes
// out of Subscribe, in order, after one EventConnected.
func TestClientSecurityStream(t *testing.T) {
	raw := testdata(t, "ami-security-events.txt")
	// Skip the banner and the captured login reply; the fake answers the login itself.
	_, rest, _ := bytes.Cut(raw, []byte("Authentication accepted\r\n\r\n"))
	srv := startFake(t, func(c *fakeConn) {
		m, ok := c.login("aim", "aimsecret")
		if !ok {
			return
		}
		if m.Get("Events") != "on" {
			t.Errorf("Login Events = %q, want on", m.Get("Events"))
		}
		c.write(string(rest))
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret")
	cfg := testConfig(srv.addr())
	cfg.Coalesce = time.Millisecond // the agent's setting; must not change what arrives
	c := NewClient(cfg, log)
	events, cancel := c.Subscribe(200)
	defer cancel()
	// OnEvent sees the same events, in order, without EventConnected.
	var mu sync.Mutex
	var direct []Message
	stop := c.OnEvent(func(m *Message) {
		mu.Lock()
		direct = append(direct, *m)
		mu.Unlock()
	})
	defer stop()
	runClient(t, c)

	first := recv(t, events)
	if first.Event() != EventConnected || first.Get("AMIVersion") != "11.0.0" || first.Get("Address") != srv.addr() {
		t.Fatalf("first message = %v", first)
	}
	want, _ := parseAll(t, raw, true, ParserLimits{})
	var wantEvents []Message
	for _, m := range want {
		if m.Event() != "" {
			wantEvents = append(wantEvents, m)
		}
	}
	if len(wantEvents) != 131 {
		t.Fatalf("capture has %d events, want 131", len(wantEvents))
	}
	for i, w := range wantEvents {
		got := recv(t, events)
		if !equalFields(got.Fields, w.Fields) {
			t.Fatalf("event %d = %v, want %v", i, got.Fields, w.Fields)
		}
	}
	eventually(t, "counters", func() bool { return c.Stats().EventsReceived == 131 })
	mu.Lock()
	if len(direct) != len(wantEvents) {
		t.Fatalf("OnEvent saw %d events, want %d", len(direct), len(wantEvents))
	}
	for i, w := range wantEvents {
		if !equalFields(direct[i].Fields, w.Fields) {
			t.Fatalf("OnEvent event %d = %v, want %v", i, direct[i].Fields, w.Fields)
		}
	}
	mu.Unlock()
	st := c.Stats()
	if st.EventsDropped != 0 || st.ParseErrors != 0 || st.Logins != 1 || st.Reconnects != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if !c.Connected() || c.Status().Version != "11.0.0" {
		t.Fatalf("status = %+v", c.Status())
	}
}

type actionCase struct {
	items   int    // list items expected
	errMsg  string // Asterisk's Message of an expected *ActionError
	respKey string // a field of the response to check
	respVal string
}

// The actions of supplement-2/1-ami-actions, replayed byte for byte from the
// capture, with the ActionIDs rewritten to the client's.
func TestClientActionsReplay(t *testing.T) {
	chunks := captureChunks(testdata(t, "ami-actions.s2c.raw"))
	captured, _ := parseAll(t, testdata(t, "ami-actions.c2s.raw"), false, ParserLimits{})
	srv := startFake(t, func(c *fakeConn) {
		c.write(banner)
		for i := range captured {
			m, ok := c.readAction()
			if !ok {
				return
			}
			if !strings.EqualFold(m.Get("Action"), captured[i].Get("Action")) {
				t.Errorf("action %d = %q, want %q", i, m.Get("Action"), captured[i].Get("Action"))
				return
			}
			for _, ch := range chunks[captured[i].Get("ActionID")] {
				if !c.write(withID(ch, m.Get("ActionID"))) {
					return
				}
			}
		}
		// Like Asterisk after Logoff: close at once.
	})
	log, _ := testLogger(t, "aimsecret")
	cfg := testConfig(srv.addr())
	cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour // one connection only
	c := NewClient(cfg, log)
	events, cancel := c.Subscribe(10)
	defer cancel()
	runClient(t, c)
	if m := recv(t, events); m.Event() != EventConnected {
		t.Fatalf("first message = %v", m)
	}

	want := map[string]actionCase{
		"s1-ping":                {respKey: "Ping", respVal: "Pong"},
		"s1-events-off":          {respKey: "Events", respVal: "Off"},
		"s1-userevent":           {respKey: "Message", respVal: "Event Sent"},
		"s1-coresettings":        {respKey: "SystemName", respVal: "aim-a"},
		"s1-contacts-2":          {items: 2, respKey: "EventList", respVal: "start"},
		"s1-endpoints-reg":       {items: 2},
		"s1-extstates-reg":       {items: 2},
		"s1-devstates-reg":       {items: 2},
		"s1-extstate-1001-reg":   {respKey: "StatusText", respVal: "Idle"},
		"s1-contacts-0":          {items: 0, respKey: "Message", respVal: "No Contacts found"},
		"s1-endpoints-unreg":     {items: 2},
		"s1-devstates-unreg":     {items: 2},
		"s1-extstates-unreg":     {items: 2},
		"s1-unknown":             {errMsg: "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available commands."},
		"s1-getvar-novar":        {errMsg: "No variable specified"},
		"s1-originate-nochan":    {errMsg: "Channel not specified"},
		"s1-showendpoint-noep":   {errMsg: "PJSIPShowEndpoint requires an endpoint name"},
		"s1-extstate-noexten":    {errMsg: "Extension not specified"},
		"s1-logoff":              {respKey: "Response", respVal: "Goodbye"},
		"s1-extstate-1001-unreg": {respKey: "Status", respVal: "4"},
	}
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	for _, a := range captured[1:] { // [0] is the Login
		id := a.Get("ActionID")
		resp, list, err := c.Action(ctx, a)
		w := want[id]
		var ae *ActionError
		switch {
		case w.errMsg != "":
			if !errors.As(err, &ae) || ae.Message != w.errMsg || ae.Action != a.Get("Action") {
				t.Errorf("%s: err = %v, want ActionError %q", id, err, w.errMsg)
			} else if !strings.Contains(err.Error(), a.Get("Action")) {
				t.Errorf("%s: error %q does not name the action", id, err)
			}
		case err != nil:
			t.Errorf("%s: %v", id, err)
		}
		if len(list) != w.items {
			t.Errorf("%s: %d list items, want %d", id, len(list), w.items)
		}
		if w.respKey != "" && resp.Get(w.respKey) != w.respVal {
			t.Errorf("%s: response %s = %q, want %q", id, w.respKey, resp.Get(w.respKey), w.respVal)
		}
		if id == "s1-contacts-2" {
			if list[0].Event() != "ContactList" || list[1].Get("Uri") != "sip:1002@127.0.0.1:5071" ||
				list[0].Get("RegServer") != "aim-a" || list[0].Get("ExpirationTime") != "1795609363" {
				t.Errorf("contacts = %v", list)
			}
		}
		if id == "s1-devstates-unreg" && (list[0].Get("Device") != "PJSIP/1001" || list[1].Get("State") != "UNAVAILABLE") {
			t.Errorf("device states = %v", list)
		}
		if id == "s1-userevent" {
			// The UserEvent echoes our ActionID but follows the response: it is an event.
			if m := recv(t, events); m.Event() != "UserEvent" || m.Get("UserEvent") != "AimProbe" {
				t.Errorf("after UserEvent: %v", m)
			}
		}
	}
	// List items never reach subscribers; the server closes after Logoff.
	eventually(t, "disconnect after Logoff", func() bool { return !c.Connected() })
	if st := c.Stats(); st.EventsReceived != 1 || st.ParseErrors != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// Two actions in flight, answered out of order, with events interleaved in
// the list: every reply reaches its caller and every event the subscriber.
func TestClientActionIDCorrelation(t *testing.T) {
	chunks := captureChunks(testdata(t, "ami-actions.s2c.raw"))
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		got := map[string]string{}
		for len(got) < 2 {
			m, ok := c.readAction()
			if !ok {
				return
			}
			got[m.Get("Action")] = m.Get("ActionID")
		}
		devID, pingID := got["DeviceStateList"], got["Ping"]
		dev := chunks["s1-devstates-reg"]
		c.write(withID(dev[0], devID) + withID(dev[1], devID))
		c.write("Event: PeerStatus\r\nPrivilege: system,all\r\nPeer: PJSIP/1002\r\nPeerStatus: Reachable\r\n\r\n")
		c.write(withID(chunks["s1-ping"][0], pingID))
		// A DeviceStateChange with no ActionID is a live event, not a list item.
		c.write("Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/1003\r\nState: INUSE\r\n\r\n")
		c.write(withID(dev[2], devID) + withID(dev[3], devID))
		// A reply nobody waits for is skipped.
		c.write("Response: Success\r\nActionID: someone-else\r\n\r\n")
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret")
	c := NewClient(testConfig(srv.addr()), log)
	events, cancel := c.Subscribe(10)
	defer cancel()
	runClient(t, c)
	if m := recv(t, events); m.Event() != EventConnected {
		t.Fatalf("first message = %v", m)
	}

	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	var wg sync.WaitGroup
	var list []Message
	var listErr error
	wg.Go(func() {
		_, list, listErr = c.Action(ctx, Message{Fields: []Field{{"Action", "DeviceStateList"}, {"ActionID", "mine"}}})
	})
	resp, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "Ping"}}})
	if err != nil || resp.Get("Ping") != "Pong" {
		t.Fatalf("Ping = %v, %v", resp, err)
	}
	wg.Wait()
	if listErr != nil || len(list) != 2 || list[0].Get("Device") != "PJSIP/1001" || list[1].Get("Device") != "PJSIP/1002" {
		t.Fatalf("DeviceStateList = %v, %v", list, listErr)
	}
	if m := recv(t, events); m.Event() != "PeerStatus" {
		t.Fatalf("event 1 = %v", m)
	}
	if m := recv(t, events); m.Event() != "DeviceStateChange" || m.Get("Device") != "PJSIP/1003" {
		t.Fatalf("event 2 = %v", m)
	}
	if st := c.Stats(); st.EventsReceived != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestClientActionErrors(t *testing.T) {
	c := NewClient(testConfig("127.0.0.1:1"), nil)
	ctx := context.Background()
	if _, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "Ping"}}}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("not connected: %v", err)
	}
	if _, _, err := c.Action(ctx, Message{Fields: []Field{{"Exten", "1"}}}); err == nil || !strings.Contains(err.Error(), "no Action") {
		t.Errorf("no Action field: %v", err)
	}
	_, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "Setvar"}, {"Value", "x\r\nAction: Originate"}}})
	if err == nil || !strings.Contains(err.Error(), "line break") || strings.Contains(err.Error(), "Originate") {
		t.Errorf("injected line break: %v", err)
	}
	if _, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "Setvar"}, {"Bad:Key", "x"}}}); err == nil {
		t.Error("colon in a key accepted")
	}
}

// The server drops the connection after each login: the client reconnects,
// and every new login gives subscribers a new EventConnected.
func TestClientReconnect(t *testing.T) {
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		c.write("Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
		// then close: the peer went away
	})
	log, buf := testLogger(t, "aimsecret")
	c := NewClient(testConfig(srv.addr()), log)
	events, cancel := c.Subscribe(100)
	defer cancel()
	runClient(t, c)
	for i := range 3 {
		if m := recv(t, events); m.Event() != EventConnected {
			t.Fatalf("round %d: %v, want %s", i, m, EventConnected)
		}
		if m := recv(t, events); m.Event() != "FullyBooted" {
			t.Fatalf("round %d: %v, want FullyBooted", i, m)
		}
	}
	st := c.Stats()
	if st.Logins < 3 || st.Reconnects < 2 || st.LoginFailures != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if !strings.Contains(buf.String(), "connection lost") {
		t.Errorf("reconnect not logged")
	}
	if c.Status().LastError == "" {
		t.Errorf("status has no last error: %+v", c.Status())
	}
}

// Wrong credentials: each attempt is refused like Asterisk does; the client
// logs the reason without the secret and retries with a growing delay.
func TestClientWrongCredentials(t *testing.T) {
	const secret = "s3cr3t-never-logged"
	srv := startFake(t, func(c *fakeConn) {
		c.login("aim", "the-right-one")
	})
	log, buf := testLogger(t, secret)
	cfg := testConfig(srv.addr())
	cfg.Secret = secret
	cfg.BackoffMin, cfg.BackoffMax = 40*time.Millisecond, 160*time.Millisecond
	c := NewClient(cfg, log)
	runClient(t, c)
	eventually(t, "5 login attempts", func() bool { return srv.accepts.Load() >= 5 })
	ts := srv.acceptTimes()
	// Equal jitter: the n-th wait is at least half of min(40ms<<n, 160ms).
	for i, lo := range []time.Duration{20, 40, 80, 80} {
		if gap := ts[i+1].Sub(ts[i]); gap < lo*time.Millisecond {
			t.Errorf("retry %d after %v, want at least %v", i+1, gap, lo*time.Millisecond)
		}
	}
	st := c.Status()
	if st.Connected || !strings.Contains(st.LastError, "Authentication failed") || strings.Contains(st.LastError, secret) {
		t.Fatalf("status = %+v", st)
	}
	if c.Stats().LoginFailures < 4 {
		t.Fatalf("stats = %+v", c.Stats())
	}
	out := buf.String()
	if !strings.Contains(out, "login failed") || !strings.Contains(out, "Authentication failed") || !strings.Contains(out, "username=aim") {
		t.Errorf("login failure not logged with its reason:\n%s", out)
	}
}

// An MD5 login replayed from supplement-2/2-ami-md5-login: the Key the
// client sends must equal the one Asterisk accepted for that challenge.
func TestClientMD5Login(t *testing.T) {
	srv := startFake(t, func(c *fakeConn) {
		c.write(banner)
		m, ok := c.readAction()
		if !ok {
			return
		}
		if m.Get("Action") != "Challenge" || !strings.EqualFold(m.Get("AuthType"), "md5") {
			t.Errorf("first action = %v", m)
			return
		}
		c.write("Response: Success\r\nActionID: " + m.Get("ActionID") + "\r\nChallenge: 602455254\r\n\r\n")
		if m, ok = c.readAction(); !ok {
			return
		}
		if m.Get("Key") != "8e05384a69d77e44392d5162f42ccac1" || m.Get("Secret") != "" || m.Get("Username") != "aim" ||
			!strings.EqualFold(m.Get("AuthType"), "md5") || m.Get("Events") != "security,system,call" {
			t.Errorf("login = %v", m)
			c.write("Response: Error\r\nActionID: " + m.Get("ActionID") + "\r\nMessage: Authentication failed\r\n\r\n")
			return
		}
		c.write("Response: Success\r\nActionID: " + m.Get("ActionID") + "\r\nMessage: Authentication accepted\r\n\r\n")
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret", "8e05384a69d77e44392d5162f42ccac1")
	cfg := testConfig(srv.addr())
	cfg.UseMD5 = true
	cfg.Events = "security,system,call" // an event-class mask instead of "on"
	c := NewClient(cfg, log)
	events, cancel := c.Subscribe(1)
	defer cancel()
	runClient(t, c)
	if m := recv(t, events); m.Event() != EventConnected {
		t.Fatalf("got %v", m)
	}
}

// A server that stops answering: the keepalive Ping times out, the client
// drops the connection and logs in again.
func TestClientKeepalive(t *testing.T) {
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		c.wait() // never answers the Ping
	})
	log, buf := testLogger(t, "aimsecret")
	cfg := testConfig(srv.addr())
	cfg.PingInterval, cfg.PingTimeout = 20*time.Millisecond, 50*time.Millisecond
	c := NewClient(cfg, log)
	runClient(t, c)
	eventually(t, "a second login", func() bool { return c.Stats().Logins >= 2 })
	if !strings.Contains(buf.String(), "keepalive") {
		t.Errorf("keepalive failure not logged")
	}
}

// A subscriber that never reads loses events (counted); another one still
// gets all of them, so the reader never blocked. It gets EventConnected
// first even though it subscribed after the login.
func TestClientSlowSubscriber(t *testing.T) {
	const n = 500
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Event: VarSet\r\nPrivilege: dialplan,all\r\nValue: %d\r\n\r\n", i)
		}
		c.write(b.String())
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret")
	c := NewClient(testConfig(srv.addr()), log)
	slow, cancelSlow := c.Subscribe(2)
	defer cancelSlow()
	runClient(t, c)
	eventually(t, "login", c.Connected)
	fast, cancelFast := c.Subscribe(n + 10)
	defer cancelFast()
	if m := recv(t, fast); m.Event() != EventConnected {
		t.Fatalf("late subscriber's first message = %v", m)
	}
	eventually(t, "all events read", func() bool { return c.Stats().EventsReceived == n })
	for len(fast) > 0 {
		<-fast
	}
	// fast subscribed after login, so it may have missed the first events; it got none dropped.
	st := c.Stats()
	if st.EventsDropped < n-2 {
		t.Fatalf("dropped = %d, want at least %d", st.EventsDropped, n-2)
	}
	if m := recv(t, slow); m.Event() != EventConnected {
		t.Fatalf("slow subscriber's first message = %v", m)
	}
	cancelSlow()
	cancelSlow()     // idempotent
	for range slow { // ends only if cancel closed the channel
	}
}

func TestClientLoginTimeoutAndBadBanner(t *testing.T) {
	srv := startFake(t, func(c *fakeConn) {
		c.write("SSH-2.0-OpenSSH_9.6\r\n")
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret")
	c := NewClient(testConfig(srv.addr()), log)
	runClient(t, c)
	eventually(t, "banner error", func() bool { return strings.Contains(c.Status().LastError, "unexpected banner") })

	silent := startFake(t, func(c *fakeConn) {
		c.write(banner)
		c.wait() // never answers the Login
	})
	cfg := testConfig(silent.addr())
	cfg.LoginTimeout = 100 * time.Millisecond
	c2 := NewClient(cfg, log)
	runClient(t, c2)
	eventually(t, "login timeout", func() bool { return strings.Contains(c2.Status().LastError, "no reply within") })
	if c2.Stats().LoginFailures == 0 {
		t.Errorf("timeout not counted as a login failure")
	}
}

func TestConfigRedacts(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:5038", Username: "aim", Secret: "hunter2"}
	log, buf := testLogger(t, "hunter2")
	log.Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), buf.String()} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, "redacted") {
			t.Errorf("not redacted: %s", s)
		}
	}
	if err := (Config{Username: "a"}).Validate(); err == nil || !strings.Contains(err.Error(), "addr") {
		t.Errorf("missing addr: %v", err)
	}
	if err := (Config{Addr: "x:1", Username: "a", Secret: "p\r\nAction: x"}).Validate(); err == nil || strings.Contains(err.Error(), "Action: x") {
		t.Errorf("secret with a line break: %v", err)
	}
	if err := NewClient(Config{}, nil).Run(context.Background()); err == nil {
		t.Error("Run with an empty config did not fail")
	}
}

// A list action given up before its reply: the late reply and its items are
// swallowed, not published as live events, and the next action works.
func TestClientAbandonedList(t *testing.T) {
	chunks := captureChunks(testdata(t, "ami-actions.s2c.raw"))
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		m, ok := c.readAction() // DeviceStateList, answered only after the next action arrives
		if !ok {
			return
		}
		ping, ok := c.readAction()
		if !ok {
			return
		}
		for _, ch := range chunks["s1-devstates-reg"] {
			c.write(withID(ch, m.Get("ActionID")))
		}
		c.write("Event: PeerStatus\r\nPrivilege: system,all\r\nPeer: PJSIP/1002\r\n\r\n")
		c.write(withID(chunks["s1-ping"][0], ping.Get("ActionID")))
		c.wait()
	})
	log, _ := testLogger(t, "aimsecret")
	c := NewClient(testConfig(srv.addr()), log)
	events, cancel := c.Subscribe(10)
	defer cancel()
	runClient(t, c)
	recv(t, events) // EventConnected

	ctx, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "DeviceStateList"}}})
	stop()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "DeviceStateList") {
		t.Fatalf("abandoned action: %v", err)
	}
	ctx, stop = context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if _, _, err := c.Action(ctx, Message{Fields: []Field{{"Action", "Ping"}}}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, events); m.Event() != "PeerStatus" {
		t.Fatalf("got %v, want only the live PeerStatus", m)
	}
	if st := c.Stats(); st.EventsReceived != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCollectors(t *testing.T) {
	c := NewClient(testConfig("127.0.0.1:1"), nil)
	c.hub.received.Add(3)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collectors()...)
	want := `
# HELP doorman_ami_connected 1 while logged in to Asterisk.
# TYPE doorman_ami_connected gauge
doorman_ami_connected 0
# HELP doorman_ami_events_received_total Events read from Asterisk (not responses or list items).
# TYPE doorman_ami_events_received_total counter
doorman_ami_events_received_total 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "doorman_ami_connected", "doorman_ami_events_received_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 7 {
		t.Fatalf("%d metrics, %v", n, err)
	}
}

// OnBatchEnd runs on the reader after the events of a read have all gone
// to OnEvent, before the next read: a batch written at once ends once,
// after its last event, and a read that brings no event ends nothing.
func TestClientOnBatchEnd(t *testing.T) {
	event := func(i int) string {
		return fmt.Sprintf("Event: InvalidPassword\r\nService: AMI\r\nSessionID: %d\r\n\r\n", i)
	}
	next := make(chan string)
	srv := startFake(t, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		for s := range next {
			c.write(s)
		}
		c.wait()
	})
	log, _ := testLogger(t)
	cfg := testConfig(srv.addr())
	cfg.Coalesce = time.Millisecond
	c := NewClient(cfg, log)
	var seen int // only the reader goroutine touches it
	ends := make(chan int, 16)
	stopEvents := c.OnEvent(func(*Message) { seen++ })
	defer stopEvents()
	stopEnds := c.OnBatchEnd(func() { ends <- seen })
	defer stopEnds()
	runClient(t, c)

	waitEnd := func(want int) {
		t.Helper()
		last := 0
		for last != want {
			select {
			case n := <-ends:
				if n <= last || n > want {
					t.Fatalf("batch ended after %d events, then after %d (want up to %d)", last, n, want)
				}
				last = n
			case <-time.After(5 * time.Second):
				t.Fatalf("no batch end after %d events (last after %d)", want, last)
			}
		}
	}
	next <- event(1) + event(2) + event(3)
	waitEnd(3)
	// A reply nobody waits for is no event: no batch end for it.
	next <- "Response: Success\r\nActionID: nobody\r\n\r\n"
	next <- event(4) + event(5)
	waitEnd(5)
	close(next)
	select {
	case n := <-ends:
		t.Fatalf("extra batch end after %d events", n)
	case <-time.After(20 * time.Millisecond):
	}
}
