package asterisksim

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRestartKeepsStasisDropsEverythingElse(t *testing.T) {
	cfg := testConfig(t)
	s := startSim(t, cfg)
	amiAddr, sipAddr := s.AMIAddr(), s.SIPAddr()
	a := listenerLogin(t, s)
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	if err := s.SetDeviceState("Stasis:1002", "INUSE"); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "AMI connection dropped by restart", a.closed)
	if s.AMIAddr() != amiAddr || s.SIPAddr() != sipAddr {
		t.Errorf("addresses moved: %s %s -> %s %s", amiAddr, sipAddr, s.AMIAddr(), s.SIPAddr())
	}
	if cs := s.Contacts(); len(cs) != 0 {
		t.Errorf("contacts survived restart: %+v", cs)
	}
	if st := s.DeviceState("PJSIP/1001"); st != "UNAVAILABLE" {
		t.Errorf("PJSIP/1001 = %s after restart", st)
	}
	if st := s.DeviceState("Stasis:1002"); st != "INUSE" {
		t.Errorf("Stasis:1002 = %s after restart, want the persisted INUSE", st)
	}
	if st := s.ExtensionState("1002"); st != extInUse {
		t.Errorf("hint 1002 = %d after restart, want 1 (InUse, replayed)", st)
	}
	// A new simulator on the same StateDir replays it too (like astdb on disk).
	s2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.DeviceState("Stasis:1002"); st != "INUSE" {
		t.Errorf("new sim on the same StateDir: Stasis:1002 = %s", st)
	}
	// Everything works again on the same ports.
	b := listenerLogin(t, s)
	p2 := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p2.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register after restart: %v %v", r, err)
	}
	b.waitContains(t, "ContactStatus: NonQualified", 1)
}

func TestContactExpires(t *testing.T) {
	cfg := testConfig(t)
	cfg.ExpiryCheck = 5 * time.Millisecond
	s, clk := startSimClock(t, cfg)
	a := listenerLogin(t, s)
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	clk.advance(299 * time.Second)
	time.Sleep(30 * time.Millisecond) // several expiry checks must not remove it yet
	if len(s.Contacts()) != 1 {
		t.Fatal("contact removed before its expiry")
	}
	clk.advance(2 * time.Second)
	a.waitContains(t, "ContactStatus: Removed", 1)
	a.waitContains(t, "State: UNAVAILABLE", 1)
	if len(s.Contacts()) != 0 {
		t.Error("contact still listed after expiry")
	}
}

func TestMaxContactsAndRemoveExisting(t *testing.T) {
	ctx := context.Background()
	for _, removeExisting := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.RemoveExisting = removeExisting
		s := startSim(t, cfg)
		p1 := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
		p2 := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
		if r, err := p1.Register(ctx); err != nil || r.Status != 200 {
			t.Fatalf("register 1: %v %v", r, err)
		}
		r, err := p2.Register(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, uri := 403, p1.ContactURI()
		if removeExisting {
			want, uri = 200, p2.ContactURI()
		}
		if r.Status != want {
			t.Errorf("remove_existing=%v: second contact got %d, want %d", removeExisting, r.Status, want)
		}
		if cs := s.Contacts(); len(cs) != 1 || cs[0].URI != uri {
			t.Errorf("remove_existing=%v: contacts %+v, want %s", removeExisting, cs, uri)
		}
		// The registered phone refreshes: accepted.
		cur := p1
		if removeExisting {
			cur = p2
		}
		if r, err := cur.Register(ctx); err != nil || r.Status != 200 {
			t.Errorf("refresh: %v %v", r.Status, err)
		}
	}
}

func TestIPv6Register(t *testing.T) {
	if c, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback: ", err)
	} else {
		c.Close()
	}
	cfg := testConfig(t)
	cfg.SIPAddr = "[::1]:0"
	s := startSim(t, cfg)
	a := listenerLogin(t, s)
	p := phone(t, s, "1001", "wrongpw", "[::1]:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 401 {
		t.Fatalf("register: %v %v", r, err)
	}
	port := p.LocalAddr().(*net.UDPAddr).Port
	want := "RemoteAddress: IPV6/UDP/::1/" + itoa(port) + "\r\n"
	a.waitContains(t, "Event: ChallengeResponseFailed", 1)
	if !strings.Contains(a.text(), want) {
		t.Errorf("no %q in %s", want, a.text())
	}
	if r := p.Trace()[0].Response; !strings.Contains(string(r), ";received=::1;") {
		t.Errorf("Via received not the IPv6 source: %s", r)
	}
	logb, _ := os.ReadFile(cfg.SecurityLogPath)
	if !strings.Contains(string(logb), `RemoteAddress="IPV6/UDP/::1/`+itoa(port)+`"`) {
		t.Errorf("security log lacks the IPv6 source:\n%s", logb)
	}
}

func TestMalformedSIP(t *testing.T) {
	cfg := testConfig(t)
	s := startSim(t, cfg)
	c, err := net.Dial("udp", s.SIPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() string {
		_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		b := make([]byte, 4096)
		n, err := c.Read(b)
		if err != nil {
			return ""
		}
		return string(b[:n])
	}
	for _, garbage := range []string{"\x00\x01\x02", "hello\r\n\r\n", "SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n",
		"REGISTER sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n"} {
		_, _ = c.Write([]byte(garbage))
		if got := read(); got != "" {
			t.Errorf("garbage %q got a reply %q, want silence", garbage, got)
		}
	}
	// A request with a Via but no Call-ID gets 400 Bad Request.
	_, _ = c.Write([]byte("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKx;rport\r\nFrom: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	if got := read(); got != "" {
		t.Errorf("no Call-ID: got %q, want silence (nothing to answer with)", got)
	}
	_, _ = c.Write([]byte("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKx;rport\r\nFrom: <sip:1001@127.0.0.1>;tag=1\r\nCall-ID: abc\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	if got := read(); !strings.HasPrefix(got, "SIP/2.0 400 Bad Request\r\n") {
		t.Errorf("no To: got %q, want 400", got)
	}
	// Still alive.
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register after garbage: %v %v", r, err)
	}
}

func TestAMIGarbageAndPermissions(t *testing.T) {
	cfg := testConfig(t)
	cfg.AMIUsers["sec"] = "secpw"
	cfg.AMIRead = map[string]string{"sec": "security"}
	s := startSim(t, cfg)
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "\r\n")
	a.waitContains(t, "Message: Missing action in request\r\n", 1)
	a.send(t, "Action: Ping\r\nX: "+strings.Repeat("y", 5000)+"\r\n\r\n") // line too long: dropped
	a.send(t, "\x00\xff garbage without colon\r\n\r\n")
	a.waitContains(t, "Message: Missing action in request\r\n", 2)
	a.send(t, "Action: Login\r\nUsername: sec\r\nSecret: secpw\r\n\r\n")
	a.waitContains(t, "Authentication accepted", 1)
	if strings.Contains(a.text(), "Message: Permission denied") || strings.Count(a.text(), "Response:") != 3 {
		t.Errorf("unexpected replies: %q", a.text())
	}
	// read=security: security events arrive, device states do not.
	if err := s.SetDeviceState("PJSIP/1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	p := phone(t, s, "1001", "bad", "127.0.0.1:0", "udp")
	_, _ = p.Register(context.Background())
	a.waitContains(t, "Event: ChallengeResponseFailed", 1)
	if strings.Contains(a.text(), "DeviceStateChange") || strings.Contains(a.text(), "FullyBooted") {
		t.Errorf("read=security session got call/system events: %q", a.text())
	}
	a.send(t, "Action: Events\r\nEventMask: off\r\n\r\n")
	a.waitContains(t, "Events: Off", 1)
	_, _ = p.Register(context.Background())
	a.send(t, "Action: Ping\r\nActionID: sync\r\n\r\n")
	a.waitContains(t, "ActionID: sync", 1)
	if n := strings.Count(a.text(), "Event: ChallengeResponseFailed"); n != 1 {
		t.Errorf("events off still delivered: %d ChallengeResponseFailed", n)
	}
}

func TestCallDeviceStates(t *testing.T) {
	cfg := testConfig(t)
	cfg.PlainHints = true
	s := startSim(t, cfg)
	a := listenerLogin(t, s)
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	for _, st := range []string{"RINGING", "INUSE", "NOT_INUSE"} {
		if err := s.SetDeviceState("PJSIP/1001", st); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := p.Unregister(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("unregister: %v %v", r, err)
	}
	a.waitContains(t, "ContactStatus: Removed", 1)
	// The capture's device and extension events, in order (channel events are not simulated).
	keep := func(stream string) []string {
		var out []string
		for _, m := range messages(stream) {
			if strings.Contains(m, "Event: DeviceStateChange") || strings.Contains(m, "Event: ExtensionStatus") {
				out = append(out, m)
			}
		}
		return out
	}
	want := keep(readTranscript(t, "supplement-2/3-call-devstate/ami-events.txt"))
	got := keep(a.text())
	devOnly := func(ms []string, name string) string {
		var out []string
		for _, m := range ms {
			if strings.Contains(m, name) {
				out = append(out, m)
			}
		}
		return strings.Join(out, "")
	}
	for _, name := range []string{"Event: DeviceStateChange", "Event: ExtensionStatus"} {
		if d := diff(devOnly(want, name), devOnly(got, name)); d != "" {
			t.Errorf("%s sequence differs at %s", name, d)
		}
	}
	if err := s.SetDeviceState("PJSIP/9999", "INUSE"); err == nil {
		t.Error("SetDeviceState accepted an unknown endpoint")
	}
	if err := s.SetDeviceState("PJSIP/1001", "BOGUS"); err == nil {
		t.Error("SetDeviceState accepted an unknown state")
	}
}

func TestStaleNonce(t *testing.T) {
	cfg := testConfig(t)
	s, clk := startSimClock(t, cfg)
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	ctx := context.Background()
	r, err := p.Do(ctx, p.Request(300, ""))
	if err != nil || r.Status != 401 {
		t.Fatalf("challenge: %v %v", r, err)
	}
	auth, err := p.Authorization(r.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(40 * time.Second) // past res_pjsip's 32 s nonce lifetime
	r, err = p.Do(ctx, p.Request(300, auth))
	if err != nil || r.Status != 401 || !strings.Contains(r.Get("WWW-Authenticate"), ",stale=true,") {
		t.Fatalf("stale nonce: %v %v", r, err)
	}
	if len(s.Contacts()) != 0 {
		t.Error("registered with a stale nonce")
	}
	// A nonce forged for another source is refused outright.
	forged := strings.Replace(auth, "nonce=\"", "nonce=\"1", 1)
	if r, err = p.Do(ctx, p.Request(300, forged)); err != nil || r.Status != 401 || strings.Contains(r.Get("WWW-Authenticate"), "stale") {
		t.Fatalf("forged nonce: %v %v", r, err)
	}
	if r, err = p.Register(ctx); err != nil || r.Status != 200 {
		t.Fatalf("fresh register: %v %v", r, err)
	}
}

// TestQualify follows qualify-supplement: with qualify on, an answering
// phone goes NonQualified -> Reachable; a silent one goes Unreachable
// (device UNAVAILABLE) and comes back when it answers again.
func TestQualify(t *testing.T) {
	cfg := testConfig(t)
	cfg.QualifyFrequency = 50 * time.Millisecond
	cfg.QualifyTimeout = 100 * time.Millisecond
	cfg.PlainHints = true
	s := startSim(t, cfg)
	a := listenerLogin(t, s)
	ctx := context.Background()
	p := phone(t, s, "1002", "pw1002", "127.0.0.1:0", "udp")
	if r, err := p.Register(ctx); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	if err := p.Listen(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	a.waitContains(t, "ContactStatus: Reachable", 1)
	a.waitContains(t, "State: NOT_INUSE", 1)
	if st := s.DeviceState("PJSIP/1002"); st != "NOT_INUSE" {
		t.Errorf("PJSIP/1002 = %s while reachable", st)
	}
	// Stop answering.
	a.waitContains(t, "ContactStatus: Unreachable", 1)
	a.waitContains(t, "State: UNAVAILABLE", 1)
	if err := p.Listen(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	a.waitContains(t, "ContactStatus: Reachable", 2)
	if st := s.DeviceState("PJSIP/1002"); st != "NOT_INUSE" {
		t.Errorf("PJSIP/1002 = %s after answering again", st)
	}
	// The sequence of kinds matches the capture's (without its timings).
	kinds := func(stream string) string {
		var out []string
		for _, m := range messages(stream) {
			for _, k := range []string{"PeerStatus: ", "ContactStatus: ", "State: "} {
				if i := strings.Index(m, k); i >= 0 {
					out = append(out, strings.SplitN(m[i:], "\r", 2)[0])
				}
			}
		}
		return strings.Join(out, " | ")
	}
	capture := readTranscript(t, "qualify-supplement/ami-raw.txt")
	// The capture's third registration: register, reachable, unreachable, reachable again.
	start := strings.Index(capture, "EventTV: 2026-11-25T11:28:54.417")
	end := strings.Index(capture, "EventTV: 2026-11-25T11:29:17.422")
	want := kinds(capture[start:end])
	got := kinds(a.text())
	if !strings.Contains(got, want) {
		t.Errorf("qualify sequence\n got %s\nwant %s", got, want)
	}
}
