package asterisksim

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// phone binds a sipua phone on the given local address.
func phone(t *testing.T, s *Sim, user, pw, local, transport string) *sipua.Phone {
	t.Helper()
	p, err := sipua.New(context.Background(), sipua.Config{Server: s.SIPAddr(), Transport: transport,
		LocalAddr: local, User: user, Password: pw, Domain: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// phaseOne drives steps 1-6 of actions-timeline.log PHASE1 and returns the
// SIP exchanges in capture order.
func phaseOne(t *testing.T, s *Sim, clk *fakeClock) []sipua.Exchange {
	t.Helper()
	ctx := context.Background()
	addr1001, addr9999 := freeUDPPort(t), freeUDPPort(t)
	var trace []sipua.Exchange

	// (1) wrong password for 1001
	p := phone(t, s, "1001", "wrongpw", addr1001, "udp")
	r, err := p.Register(ctx)
	if err != nil || r.Status != 401 {
		t.Fatalf("wrong password: %v %+v", err, r)
	}
	trace = append(trace, p.Trace()...)
	_ = p.Close()
	clk.advance(1500 * time.Millisecond)
	// (2) unknown account 9999
	p = phone(t, s, "9999", "whatever", addr9999, "udp")
	if r, err = p.Register(ctx); err != nil || r.Status != 401 {
		t.Fatalf("unknown account: %v %+v", err, r)
	}
	trace = append(trace, p.Trace()...)
	_ = p.Close()
	clk.advance(1500 * time.Millisecond)
	// (3) good register, (4) unregister
	p = phone(t, s, "1001", "pw1001", addr1001, "udp")
	if r, err = p.Register(ctx); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %+v", err, r)
	}
	clk.advance(2500 * time.Millisecond)
	if r, err = p.Unregister(ctx); err != nil || r.Status != 200 {
		t.Fatalf("unregister: %v %+v", err, r)
	}
	trace = append(trace, p.Trace()...)
	// (5) AMI wrong secret, (6) AMI unknown user
	for _, login := range []string{
		"Action: Login\r\nActionID: probe-aim\r\nUsername: aim\r\nSecret: wrongsecret\r\n\r\n",
		"Action: Login\r\nActionID: probe-nosuchuser\r\nUsername: nosuchuser\r\nSecret: whatever\r\n\r\n",
	} {
		a := dialAMI(t, s.AMIAddr())
		a.send(t, login)
		waitFor(t, "AMI close after failed login", a.closed)
		want := "Asterisk Call Manager/11.0.0\r\nResponse: Error\r\nActionID: " +
			regexp.MustCompile(`ActionID: (\S+)`).FindStringSubmatch(login)[1] + "\r\nMessage: Authentication failed\r\n\r\n"
		if a.text() != want {
			t.Errorf("failed login reply:\n got %q\nwant %q", a.text(), want)
		}
	}
	return trace
}

func listenerLogin(t *testing.T, s *Sim) *rawAMI {
	t.Helper()
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "Action: Login\r\nActionID: listener-login\r\nUsername: aim\r\nSecret: aimsecret\r\nEvents: on\r\n\r\n")
	a.waitContains(t, "Event: SuccessfulAuth", 1)
	return a
}

// TestReplayPhase1AMI replays PHASE1 of actions-timeline.log and compares the
// listener's AMI byte stream with ami-security-events.txt.
func TestReplayPhase1AMI(t *testing.T) {
	capture := readTranscript(t, "ami-security-events.txt")[:5636] // ami_byte at PHASE2
	cfg := testConfig(t)
	cfg.PlainHints = true
	s, clk := startSimClock(t, cfg)
	a := listenerLogin(t, s)
	trace := phaseOne(t, s, clk)
	a.waitContains(t, "Event: InvalidAccountID\r\n", 3)

	want, got := newNormaliser().norm(capture), newNormaliser().norm(a.text())
	if d := diff(want, got); d != "" {
		t.Errorf("AMI stream differs from the capture at %s", d)
	}

	// SIP responses, in order, against sip-register-raw.txt PHASE1.
	sip := readTranscript(t, "sip-register-raw.txt")
	phase1 := sip[:strings.Index(sip, "########## PHASE2")]
	var wantResp, wantReq []string
	for _, chunk := range strings.Split(phase1, "\n----- ")[1:] {
		hdr, body, _ := strings.Cut(chunk, "-----\n")
		if strings.Contains(hdr, " <- ") {
			wantResp = append(wantResp, strings.TrimSuffix(body, "\n\n"))
		} else {
			wantReq = append(wantReq, strings.TrimSuffix(body, "\n\n"))
		}
	}
	if len(trace) != len(wantResp) {
		t.Fatalf("got %d SIP responses, capture has %d", len(trace), len(wantResp))
	}
	nw, ng := newNormaliser(), newNormaliser()
	for i := range trace {
		// The phone (sipua) must send what the capture's probe sent, too.
		if d := diff(nw.norm(wantReq[i]), ng.norm(string(trace[i].Request))); d != "" {
			t.Errorf("SIP request %d differs at %s", i+1, d)
		}
		w, g := nw.norm(wantResp[i]), ng.norm(string(trace[i].Response))
		if d := diff(w, g); d != "" {
			t.Errorf("SIP response %d differs at %s", i+1, d)
		}
	}

	// Security log lines, against security-log.txt up to 11:26:43.
	logText := readTranscript(t, "security-log.txt")
	var wantLog []string
	for _, l := range strings.Split(logText, "\n") {
		if strings.Contains(l, "SecurityEvent=") && l < "[2026-11-25 11:26:44" {
			wantLog = append(wantLog, l)
		}
	}
	gotLogB, err := os.ReadFile(cfg.SecurityLogPath)
	if err != nil {
		t.Fatal(err)
	}
	var gotLog []string
	for _, l := range strings.Split(string(gotLogB), "\n") {
		if strings.Contains(l, "SecurityEvent=") {
			gotLog = append(gotLog, l)
		}
	}
	if d := diff(newNormaliser().norm(strings.Join(wantLog, "\n")), newNormaliser().norm(strings.Join(gotLog, "\n"))); d != "" {
		t.Errorf("security log differs at %s", d)
	}
}

// TestReplayPhases1to3AMI replays PHASE1, PHASE2 and the AMI-visible part of
// PHASE3 (Stasis PUT/DELETE, register, unregister) and compares the whole
// listener stream up to PHASE4 with the capture (security events in exact
// order; the other events as a multiset, their relative order is not stable
// on Asterisk either: PHASE1 and PHASE2 differ).
func TestReplayPhases1to3AMI(t *testing.T) {
	capture := readTranscript(t, "ami-security-events.txt")[:13191] // ami_byte at PHASE4
	cfg := testConfig(t)
	cfg.PlainHints = true
	s, clk := startSimClock(t, cfg)
	a := listenerLogin(t, s)
	phaseOne(t, s, clk)
	clk.advance(2 * time.Second)
	phaseOne(t, s, clk)
	// PHASE3 REST calls as the ARI layer would make them.
	b := s.Backend()
	if err := b.SetStasisState("Stasis:1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteStasisState("Stasis:1001"); err != nil {
		t.Fatal(err)
	}
	p := phone(t, s, "1001", "pw1001", freeUDPPort(t), "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	clk.advance(1500 * time.Millisecond)
	if r, err := p.Unregister(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("unregister: %v %v", r, err)
	}
	a.waitContains(t, "ContactStatus: Removed", 3)
	a.waitContains(t, "StatusText: Unavailable", 3)
	sameMessages(t, "PHASE1-3 AMI stream", capture, a.text())
}
