package intrusion

import (
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
)

const transcript = "testdata/ami-security-events.txt"

// The real capture holds, per phase: a wrong PJSIP password (ChallengeSent,
// ChallengeResponseFailed), an unknown PJSIP account (InvalidAccountID x2,
// ChallengeSent, ChallengeResponseFailed with one Call-ID), a good
// register and unregister, a wrong AMI secret and an unknown AMI user; two
// phases: 8 failed attempts from 12 trigger events.
func TestAttemptsFromTranscript(t *testing.T) {
	cfg := testConfig()
	cfg.Threshold = 100 // count only
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, cfg, clock, store, store, newFakeFirewall(clock), "pbx-a")
	src := netip.MustParseAddr("192.0.2.10")
	evs := transcriptEvents(t, transcript, src)
	if len(evs) != 29 {
		t.Fatalf("read %d security events from the transcript, want 29", len(evs))
	}
	triggers := 0
	for _, ev := range evs {
		clock.Set(ev.Time)
		h.m.Handle(ev)
		if h.m.triggers[ev.Type] {
			triggers++
		}
	}
	if triggers != 12 {
		t.Fatalf("%d trigger events, want 12", triggers)
	}
	if got := value(t, h.m.met.attempts); got != 8 {
		t.Errorf("attempts = %v, want 8", got)
	}
	if got := h.m.records[netip.PrefixFrom(src, 32)].strikes; got != 8 {
		t.Errorf("strikes = %d, want 8", got)
	}
	if got := value(t, h.m.met.events["InvalidAccountID"]); got != 6 {
		t.Errorf("InvalidAccountID events = %v, want 6", got)
	}
	if got := value(t, h.m.met.skipped.WithLabelValues(skipIgnored)); got != 10 {
		t.Errorf("ignored events = %v, want 10 (ChallengeSent)", got)
	}
}

// One REGISTER round for an unknown account raises four events; with a
// threshold of 2 it must not ban, the next round (new Call-ID) must.
func TestOneRegisterRoundIsOneAttempt(t *testing.T) {
	cfg := testConfig()
	cfg.Threshold = 2
	h := startMonitor(t, cfg)
	round := func(callID string) {
		for _, typ := range []string{"InvalidAccountID", "ChallengeSent", "InvalidAccountID", "ChallengeResponseFailed"} {
			ev := failed("203.0.113.9:5071", callID)
			ev.Type = typ
			h.m.Handle(ev)
		}
	}
	round("cb25bb58777be6ea@203.0.113.9")
	h.settle()
	if h.fw.count() != 0 {
		t.Fatalf("banned after one attempt: %v", h.fw.snapshot())
	}
	h.clock.Advance(100 * time.Millisecond)
	round("8c6dfc7d7b95c155@203.0.113.9")
	h.waitBanned(pfx("203.0.113.9/32"), false)
	if got := value(t, h.m.met.attempts); got != 2 {
		t.Errorf("attempts = %v, want 2", got)
	}
}

func TestAttemptWindow(t *testing.T) {
	a := newAttempts(2*time.Second, 1000)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	k := attemptKey{session: "0x7fb1b0001ad0", source: netip.MustParseAddrPort("198.51.100.4:33896")}
	if !a.observe(k, t0) {
		t.Fatal("first event is not a new attempt")
	}
	if a.observe(k, t0.Add(1999*time.Millisecond)) {
		t.Fatal("event within the window counted as a new attempt")
	}
	// A phone reusing its Call-ID, or AMI reusing a session pointer, later:
	if !a.observe(k, t0.Add(2*time.Second)) {
		t.Fatal("retry after the window is not a new attempt")
	}
	other := k
	other.source = netip.MustParseAddrPort("198.51.100.5:33896")
	if !a.observe(other, t0.Add(2*time.Second)) {
		t.Fatal("same SessionID from another source merged")
	}
	if a.observe(other, t0.Add(2500*time.Millisecond)) {
		t.Fatal("second event of the other source counted again")
	}
	// Everything expires.
	a.observe(attemptKey{session: "x"}, t0.Add(time.Hour))
	if a.len() != 1 {
		t.Fatalf("%d groups open after expiry, want 1", a.len())
	}
}

func TestAttemptsBounded(t *testing.T) {
	a := newAttempts(time.Hour, 100)
	t0 := time.Now()
	for i := range 10_000 {
		k := attemptKey{session: string(rune(i)), source: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060)}
		if !a.observe(k, t0) {
			t.Fatalf("event %d not new", i)
		}
	}
	if a.len() > 100 || a.n > 100 {
		t.Fatalf("%d groups (%d queued) held, cap 100", a.len(), a.n)
	}
}

func TestRecordsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTracked = 1000
	cfg.Threshold = 5
	h := startMonitor(t, cfg)
	for i := range 20_000 {
		ev := failed("192.0.2.1:5060", "s")
		ev.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 5060)
		h.m.Handle(ev)
	}
	h.m.mu.Lock()
	nrec, ngroups := len(h.m.records), h.m.groups.len()
	h.m.mu.Unlock()
	if nrec > cfg.MaxTracked || ngroups > cfg.MaxTracked {
		t.Fatalf("holding %d records and %d groups, cap %d", nrec, ngroups, cfg.MaxTracked)
	}
}

func FuzzHandle(f *testing.F) {
	for _, ev := range transcriptEvents(f, transcript, netip.MustParseAddr("192.0.2.10")) {
		b, _ := ev.Remote.Addr().MarshalBinary()
		f.Add(ev.Type, ev.Service, ev.SessionID, ev.AccountID, b, ev.Remote.Port())
	}
	f.Add("InvalidPassword", "AMI", "", "\x00\n", []byte{}, uint16(0))
	f.Add("ChallengeResponseFailed", "pjsip", "x", "y", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1}, uint16(5060))
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(f, testConfig(), clock, store, store, newFakeFirewall(clock), "pbx-a")
	f.Fuzz(func(t *testing.T, typ, service, session, account string, addr []byte, port uint16) {
		var a netip.Addr
		_ = a.UnmarshalBinary(addr)
		clock.Advance(time.Millisecond)
		h.m.Handle(ami.SecurityEvent{Type: typ, Service: service, SessionID: session, AccountID: account,
			Remote: netip.AddrPortFrom(a, port)})
		h.m.mu.Lock()
		for p := range h.m.bans {
			if h.m.overlapsNeverBan(p) || p != p.Masked() || p.Addr().Is4In6() {
				t.Fatalf("bad ban %v", p)
			}
		}
		h.m.mu.Unlock()
	})
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/64", "::ffff:1.2.3.4/128", "x/1", "1.2.3.4/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err == nil && (!p.IsValid() || p != p.Masked()) {
			t.Fatalf("ParsePrefix(%q) = %v", s, p)
		}
	})
}

// TestReusedCallIDIsNotFree: an attacker who reuses one Call-ID and port
// gets every REGISTER round counted, however fast it retries.
func TestReusedCallIDIsNotFree(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.9:5070")
	ev := func(typ string) ami.SecurityEvent {
		return ami.SecurityEvent{Type: typ, Service: "PJSIP", SessionID: "same-call-id", Remote: src}
	}
	a := newAttempts(2*time.Second, 100)
	k := attemptKey{session: "same-call-id", source: src}
	t0 := time.Unix(1_800_000_000, 0)
	rounds := 0
	for i := 0; i < 5; i++ {
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		// An unknown account's round: InvalidAccountID twice, then ChallengeResponseFailed.
		for _, typ := range []string{"InvalidAccountID", "InvalidAccountID", "ChallengeResponseFailed"} {
			if a.observe(k, now) {
				rounds++
			}
			if endsAttempt(ev(typ)) {
				a.close(k)
			}
		}
	}
	if rounds != 5 {
		t.Fatalf("counted %d attempts for 5 rounds with one Call-ID", rounds)
	}
}
