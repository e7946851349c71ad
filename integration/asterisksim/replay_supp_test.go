package asterisksim

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

var reActionID = regexp.MustCompile(`ActionID: (\S+)`)

// splitMessages cuts a client byte stream into AMI messages.
func splitMessages(c2s string) []string {
	var out []string
	for _, m := range strings.SplitAfter(c2s, "\r\n\r\n") {
		if m != "" {
			out = append(out, m)
		}
	}
	return out
}

// replayActions sends every message of c2s on a new AMI connection, waiting
// after each for as many lines naming its ActionID as the capture has, and
// calls before(actionID) first. It returns what the server sent.
func replayActions(t *testing.T, s *Sim, c2s, s2c string, before func(id string)) string {
	t.Helper()
	return replayRewrite(t, s, c2s, s2c, before, nil)
}

// replayRewrite is replayActions with a hook that may rewrite a message
// given what the server sent so far (e.g. to answer a random challenge).
func replayRewrite(t *testing.T, s *Sim, c2s, s2c string, before func(id string), rewrite func(msg, got string) string) string {
	t.Helper()
	a := dialAMI(t, s.AMIAddr())
	a.waitContains(t, "Asterisk Call Manager/11.0.0\r\n", 1)
	for _, m := range splitMessages(c2s) {
		id := reActionID.FindStringSubmatch(m)[1]
		if before != nil {
			before(id)
		}
		if rewrite != nil {
			m = rewrite(m, a.text())
		}
		a.send(t, m)
		if strings.Contains(m, "Action: Logoff") {
			waitFor(t, "close after Logoff", a.closed)
			continue
		}
		n := strings.Count(s2c, "ActionID: "+id+"\r\n")
		a.waitContains(t, "ActionID: "+id+"\r\n", n)
		if strings.Contains(m, "Login") && strings.Contains(s2c, "ActionID: "+id+"\r\nMessage: Authentication failed") {
			waitFor(t, "close after failed login", a.closed)
		}
	}
	return a.text()
}

// TestReplayAMIActions replays supplement-2/1-ami-actions: every reply of
// the action session must match ami-actions.s2c.raw.
func TestReplayAMIActions(t *testing.T) {
	dir := "supplement-2/1-ami-actions/"
	c2s, s2c := readTranscript(t, dir+"ami-actions.c2s.raw"), readTranscript(t, dir+"ami-actions.s2c.raw")
	cfg := testConfig(t)
	cfg.PlainHints = true
	s, clk := startSimClock(t, cfg)
	ctx := context.Background()
	p1 := phone(t, s, "1001", "pw1001", freeUDPPort(t), "udp")
	p2 := phone(t, s, "1002", "pw1002", freeUDPPort(t), "udp")
	got := replayActions(t, s, c2s, s2c, func(id string) {
		switch id {
		case "s1-contacts-2":
			if r, err := p1.Register(ctx); err != nil || r.Status != 200 {
				t.Fatalf("register 1001: %v", err)
			}
			if r, err := p2.Register(ctx); err != nil || r.Status != 200 {
				t.Fatalf("register 1002: %v", err)
			}
			clk.advance(1500 * time.Millisecond)
		case "s1-contacts-0":
			if r, err := p1.Unregister(ctx); err != nil || r.Status != 200 {
				t.Fatalf("unregister 1001: %v", err)
			}
			if r, err := p2.Unregister(ctx); err != nil || r.Status != 200 {
				t.Fatalf("unregister 1002: %v", err)
			}
		}
	})
	if d := diff(newNormaliser().norm(s2c), newNormaliser().norm(got)); d != "" {
		t.Errorf("AMI replies differ from the capture at %s", d)
	}
}

// TestReplayAMIMD5Login replays the four one-shot sessions of
// supplement-2/2-ami-md5-login and the listener's security events.
func TestReplayAMIMD5Login(t *testing.T) {
	dir := "supplement-2/2-ami-md5-login/"
	cfg := testConfig(t)
	s := startSim(t, cfg)
	listener := dialAMI(t, s.AMIAddr())
	listener.send(t, "Action: Login\r\nActionID: listener-login\r\nUsername: aim\r\nSecret: aimsecret\r\nEvents: on\r\n\r\n")
	listener.waitContains(t, "Event: SuccessfulAuth", 1)
	reChallenge := regexp.MustCompile(`Challenge: (\d+)`)
	for _, name := range []string{"ami-md5-wrong-key", "ami-md5-good-key", "ami-md5-no-challenge", "ami-challenge-errors"} {
		c2s, s2c := readTranscript(t, dir+name+".c2s.raw"), readTranscript(t, dir+name+".s2c.raw")
		got := replayRewrite(t, s, c2s, s2c, nil, func(m, got string) string {
			if name != "ami-md5-good-key" || !strings.Contains(m, "Key: ") {
				return m
			}
			ch := reChallenge.FindStringSubmatch(got)[1]
			return regexp.MustCompile(`Key: \w+`).ReplaceAllString(m, "Key: "+md5hex(ch+"aimsecret"))
		})
		if d := diff(newNormaliser().norm(s2c), newNormaliser().norm(got)); d != "" {
			t.Errorf("%s: replies differ from the capture at %s", name, d)
		}
	}
	listener.send(t, "Action: Logoff\r\nActionID: listener-logoff\r\n\r\n")
	waitFor(t, "listener closed", listener.closed)
	want := readTranscript(t, dir+"ami-events.txt")
	if d := diff(newNormaliser().norm(want), newNormaliser().norm(listener.text())); d != "" {
		t.Errorf("listener events differ from the capture at %s", d)
	}
}

// TestReplayHintStasis replays supplement-2/4-hint-stasis: 20 steps of
// register/unregister and Stasis:1001 PUT/DELETE with the hint
// PJSIP/1001&Stasis:1001, checking AMI ExtensionState after each step and
// the listener's events.
func TestReplayHintStasis(t *testing.T) {
	dir := "supplement-2/4-hint-stasis/"
	c2s, s2c := readTranscript(t, dir+"ami-extensionstate.c2s.raw"), readTranscript(t, dir+"ami-extensionstate.s2c.raw")
	cfg := testConfig(t)
	s, clk := startSimClock(t, cfg)
	listener := listenerLogin(t, s)
	ctx := context.Background()
	p := phone(t, s, "1001", "pw1001", freeUDPPort(t), "udp")
	put := func(st string) {
		if err := s.SetDeviceState("Stasis:1001", st); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(unreg bool) {
		clk.advance(1500 * time.Millisecond)
		f := p.Register
		if unreg {
			f = p.Unregister
		}
		if r, err := f(ctx); err != nil || r.Status != 200 {
			t.Fatalf("register(unreg=%v): %v %v", unreg, r, err)
		}
	}
	steps := map[string]func(){
		"s4-step2": func() { reg(false) }, "s4-step3": func() { put("INUSE") }, "s4-step4": func() { put("RINGING") },
		"s4-step5": func() { put("NOT_INUSE") }, "s4-step6": func() { put("UNAVAILABLE") }, "s4-step7": func() { reg(true) },
		"s4-step8": func() { put("NOT_INUSE") }, "s4-step9": func() { put("INUSE") }, "s4-step10": func() { put("RINGING") },
		"s4-step11": func() { put("BUSY") }, "s4-step12": func() { put("ONHOLD") }, "s4-step13": func() { put("RINGINUSE") },
		"s4-step14": func() { reg(false) }, "s4-step15": func() { put("BUSY") }, "s4-step16": func() { put("ONHOLD") },
		"s4-step17": func() { put("INUSE") }, "s4-step18": func() { put("NOT_INUSE") },
		"s4-step19": func() {
			if err := s.Backend().DeleteStasisState("Stasis:1001"); err != nil {
				t.Fatal(err)
			}
		},
		"s4-step20": func() { reg(true) },
	}
	got := replayActions(t, s, c2s, s2c, func(id string) {
		if f := steps[id]; f != nil {
			f()
		}
	})
	if d := diff(newNormaliser().norm(s2c), newNormaliser().norm(got)); d != "" {
		t.Errorf("ExtensionState replies differ from the capture at %s", d)
	}
	if st := s.DeviceState("Stasis:1001"); st != "UNKNOWN" {
		t.Errorf("after DELETE GET Stasis:1001 = %s, want UNKNOWN", st)
	}
	listener.send(t, "Action: Logoff\r\nActionID: listener-logoff\r\n\r\n")
	waitFor(t, "listener closed", listener.closed)
	sameMessages(t, "listener events", readTranscript(t, dir+"ami-events.txt"), listener.text())
}

// sipResponses extracts the responses (chunks marked "<-") of a SIP capture.
func sipResponses(capture string) []string {
	var out []string
	for _, chunk := range strings.Split(capture, "\n----- ")[1:] {
		hdr, body, _ := strings.Cut(chunk, "-----\n")
		if !strings.Contains(hdr, " <- ") {
			continue
		}
		if i := strings.Index(body, "\r\n\r\n"); i >= 0 {
			body = body[:i+4]
		}
		out = append(out, body)
	}
	return out
}

// TestReplayRegisterTCP replays supplement-2/5-register-tcp: a wrong
// password on one TCP connection, then register and unregister on another.
func TestReplayRegisterTCP(t *testing.T) {
	dir := "supplement-2/5-register-tcp/"
	cfg := testConfig(t)
	cfg.PlainHints = true
	s, clk := startSimClock(t, cfg)
	listener := listenerLogin(t, s)
	ctx := context.Background()

	bad := phone(t, s, "1001", "wrongpw", "127.0.0.1:0", "tcp")
	if r, err := bad.Register(ctx); err != nil || r.Status != 401 {
		t.Fatalf("wrong password over TCP: %v %v", r, err)
	}
	_ = bad.Close()
	clk.advance(3 * time.Second)
	good := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "tcp")
	if r, err := good.Register(ctx); err != nil || r.Status != 200 {
		t.Fatalf("register over TCP: %v %v", r, err)
	}
	cs := s.Contacts()
	if len(cs) != 1 || cs[0].URI != good.ContactURI() || !strings.HasSuffix(cs[0].URI, ";transport=tcp") {
		t.Fatalf("contacts = %+v", cs)
	}
	clk.advance(1500 * time.Millisecond)
	if r, err := good.Unregister(ctx); err != nil || r.Status != 200 {
		t.Fatalf("unregister over TCP: %v %v", r, err)
	}
	var got []string
	for _, x := range append(bad.Trace(), good.Trace()...) {
		got = append(got, string(x.Response))
	}
	want := sipResponses(readTranscript(t, dir+"sip-tcp-raw.txt"))
	if len(want) != len(got) {
		t.Fatalf("got %d responses, capture has %d", len(got), len(want))
	}
	nw, ng := newNormaliser(), newNormaliser()
	for i := range want {
		if d := diff(nw.norm(want[i]), ng.norm(got[i])); d != "" {
			t.Errorf("response %d differs at %s", i+1, d)
		}
	}
	// The events reach the listener's queue after the replies: its last
	// one must be there before the Logoff ends the session.
	listener.waitContains(t, "ContactStatus: Removed", 1)
	listener.send(t, "Action: Logoff\r\nActionID: listener-logoff\r\n\r\n")
	waitFor(t, "listener closed", listener.closed)
	sameMessages(t, "listener events", readTranscript(t, dir+"ami-events.txt"), listener.text())
}

// TestReplayAMIActionsEvents checks the events-on listener of
// supplement-2/1-ami-actions (UserEvent, registrations, RequestBadFormat).
func TestReplayAMIActionsEvents(t *testing.T) {
	dir := "supplement-2/1-ami-actions/"
	c2s, s2c := readTranscript(t, dir+"ami-actions.c2s.raw"), readTranscript(t, dir+"ami-actions.s2c.raw")
	cfg := testConfig(t)
	cfg.PlainHints = true
	s, _ := startSimClock(t, cfg)
	listener := listenerLogin(t, s)
	ctx := context.Background()
	p1 := phone(t, s, "1001", "pw1001", freeUDPPort(t), "udp")
	p2 := phone(t, s, "1002", "pw1002", freeUDPPort(t), "udp")
	replayActions(t, s, c2s, s2c, func(id string) {
		switch id {
		case "s1-contacts-2":
			_, _ = p1.Register(ctx)
			_, _ = p2.Register(ctx)
		case "s1-contacts-0":
			_, _ = p1.Unregister(ctx)
			_, _ = p2.Unregister(ctx)
		}
	})
	listener.waitContains(t, "Event: RequestBadFormat", 1)
	listener.send(t, "Action: Logoff\r\nActionID: listener-logoff\r\n\r\n")
	waitFor(t, "listener closed", listener.closed)
	sameMessages(t, "listener events", readTranscript(t, dir+"ami-events.txt"), listener.text())
}
