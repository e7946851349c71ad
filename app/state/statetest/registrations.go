package statetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func reg(server, aor, contact string, d time.Duration) state.Registration {
	now := time.Now().Round(time.Millisecond)
	return state.Registration{Server: server, ServerAddr: "10.0.0.1:5060", Endpoint: aor, AOR: aor,
		Contact: contact, Source: "192.0.2.10:5060", UserAgent: "test phone",
		Expires: now.Add(d), Updated: now}
}

func sameReg(a, b state.Registration) bool {
	return a.Server == b.Server && a.ServerAddr == b.ServerAddr && a.Endpoint == b.Endpoint &&
		a.AOR == b.AOR && a.Contact == b.Contact && a.Source == b.Source && a.UserAgent == b.UserAgent &&
		a.Expires.Equal(b.Expires) && a.Updated.Equal(b.Updated)
}

// keysOf names registrations "server contact", sorted.
func keysOf(regs []state.Registration) []string {
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.Server + " " + r.Contact
	}
	slices.Sort(out)
	return out
}

func lookup(t *testing.T, s state.Store, aor string) []state.Registration {
	t.Helper()
	regs, err := s.LookupAOR(ctx(t), aor)
	if err != nil {
		t.Fatalf("LookupAOR %s: %v", aor, err)
	}
	for _, r := range regs {
		if r.AOR != aor {
			t.Fatalf("LookupAOR %s returned %+v", aor, r)
		}
	}
	return regs
}

func all(t *testing.T, s state.Store) []string {
	t.Helper()
	regs, err := s.AllRegistrations(ctx(t))
	if err != nil {
		t.Fatalf("AllRegistrations: %v", err)
	}
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.Server + " " + r.AOR + " " + r.Contact
	}
	slices.Sort(out)
	return out
}

func beat(t *testing.T, s state.Store, ttl time.Duration, servers ...string) {
	t.Helper()
	for _, srv := range servers {
		if err := s.Heartbeat(ctx(t), srv, ttl); err != nil {
			t.Fatalf("Heartbeat %s: %v", srv, err)
		}
	}
}

func put(t *testing.T, s state.Store, regs ...state.Registration) {
	t.Helper()
	for _, r := range regs {
		if err := s.PutRegistration(ctx(t), r); err != nil {
			t.Fatalf("PutRegistration %+v: %v", r, err)
		}
	}
}

func testRegPutLookupDelete(t *testing.T, open Open) {
	s, other, c := open(t), open(t), ctx(t)
	beat(t, s, time.Minute, "a", "b")
	if got := lookup(t, s, "1001"); len(got) != 0 {
		t.Fatalf("LookupAOR on a fresh store = %v", got)
	}
	ra := reg("a", "1001", "sip:1001@192.0.2.10:5060", time.Hour)
	rb := reg("b", "1001", "sip:1001@192.0.2.11:5060;transport=tcp", time.Hour)
	r2 := reg("a", "1002", "sip:1002@192.0.2.12:5060", time.Hour)
	put(t, s, ra, rb, r2)
	got := lookup(t, other, "1001")
	if len(got) != 2 {
		t.Fatalf("LookupAOR 1001 = %v; want 2 contacts", got)
	}
	for _, g := range got {
		if !sameReg(g, ra) && !sameReg(g, rb) {
			t.Fatalf("LookupAOR 1001 returned %+v; want %+v or %+v", g, ra, rb)
		}
	}
	// Refresh: same server, AOR and contact replaces the entry.
	ra2 := ra
	ra2.UserAgent, ra2.Expires = "new phone", ra.Expires.Add(time.Minute)
	put(t, other, ra2)
	got = lookup(t, s, "1001")
	if len(got) != 2 || !slices.ContainsFunc(got, func(r state.Registration) bool { return sameReg(r, ra2) }) {
		t.Fatalf("after refresh LookupAOR = %+v; want %+v among 2", got, ra2)
	}
	if a := all(t, s); !slices.Equal(a, []string{"a 1001 " + ra.Contact, "a 1002 " + r2.Contact, "b 1001 " + rb.Contact}) {
		t.Fatalf("AllRegistrations = %q", a)
	}
	if err := other.DeleteRegistration(c, "a", "1001", ra.Contact); err != nil {
		t.Fatalf("DeleteRegistration: %v", err)
	}
	if got := keysOf(lookup(t, s, "1001")); !slices.Equal(got, []string{"b " + rb.Contact}) {
		t.Fatalf("after delete LookupAOR = %q", got)
	}
	if err := other.DeleteRegistration(c, "a", "1001", ra.Contact); err != nil {
		t.Fatalf("DeleteRegistration of a missing contact: %v", err)
	}
	// Odd but legal names survive the round trip.
	odd := reg("a", "sales|{x}:1 é", "sip:x@[2001:db8::1]:5060;ob", time.Hour)
	put(t, s, odd)
	if got := lookup(t, other, odd.AOR); len(got) != 1 || !sameReg(got[0], odd) {
		t.Fatalf("LookupAOR %q = %+v", odd.AOR, got)
	}
}

func testRegReplace(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	beat(t, s, time.Minute, "a", "b")
	put(t, s,
		reg("a", "1001", "sip:old1", time.Hour),
		reg("a", "1002", "sip:old2", time.Hour),
		reg("b", "1001", "sip:b1", time.Hour))
	err := s.ReplaceRegistrations(c, "a", []state.Registration{
		reg("a", "1001", "sip:new1", time.Hour),
		reg("x", "1003", "sip:new3", time.Hour),    // Server is forced to "a"
		reg("a", "1004", "sip:gone", -time.Second), // already expired: left out
	})
	if err != nil {
		t.Fatalf("ReplaceRegistrations: %v", err)
	}
	want := []string{"a 1001 sip:new1", "a 1003 sip:new3", "b 1001 sip:b1"}
	if a := all(t, s); !slices.Equal(a, want) {
		t.Fatalf("after replace AllRegistrations = %q; want %q", a, want)
	}
	if got := keysOf(lookup(t, s, "1001")); !slices.Equal(got, []string{"a sip:new1", "b sip:b1"}) {
		t.Fatalf("after replace LookupAOR 1001 = %q", got)
	}
	if got := lookup(t, s, "1002"); len(got) != 0 {
		t.Fatalf("replaced registration still found: %+v", got)
	}
	if err := s.ReplaceRegistrations(c, "a", nil); err != nil {
		t.Fatalf("ReplaceRegistrations empty: %v", err)
	}
	if a := all(t, s); !slices.Equal(a, []string{"b 1001 sip:b1"}) {
		t.Fatalf("after empty replace AllRegistrations = %q", a)
	}
	// A big resync.
	big := make([]state.Registration, 2000)
	for i := range big {
		big[i] = reg("a", "ext"+strings.Repeat("9", i%7)+string(rune('a'+i%26)), "sip:c"+time.Duration(i).String(), time.Hour)
	}
	if err := s.ReplaceRegistrations(c, "a", big); err != nil {
		t.Fatalf("ReplaceRegistrations big: %v", err)
	}
	if a := all(t, s); len(a) != 2001 {
		t.Fatalf("after big replace AllRegistrations has %d; want 2001", len(a))
	}
}

func testRegExpires(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	beat(t, s, time.Minute, "a")
	short := reg("a", "1001", "sip:short", 300*time.Millisecond)
	put(t, s, short, reg("a", "1001", "sip:long", time.Hour))
	if got := lookup(t, s, "1001"); len(got) != 2 {
		t.Fatalf("LookupAOR = %+v; want 2", got)
	}
	eventually(t, "registration to expire", func() bool {
		return slices.Equal(keysOf(lookup(t, s, "1001")), []string{"a sip:long"})
	})
	if time.Now().Before(short.Expires.Add(-20 * time.Millisecond)) {
		t.Fatalf("registration gone before it expired")
	}
	if a := all(t, s); !slices.Equal(a, []string{"a 1001 sip:long"}) {
		t.Fatalf("AllRegistrations = %q", a)
	}
	// Putting an expired registration removes the contact.
	if err := s.PutRegistration(c, reg("a", "1001", "sip:long", -time.Second)); err != nil {
		t.Fatalf("PutRegistration expired: %v", err)
	}
	if got := lookup(t, s, "1001"); len(got) != 0 {
		t.Fatalf("LookupAOR after expired put = %+v", got)
	}
}

func testRegDeadServer(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	beat(t, s, time.Minute, "alive")
	beat(t, s, 300*time.Millisecond, "dying")
	put(t, s, reg("alive", "1001", "sip:1", time.Hour), reg("dying", "1001", "sip:2", time.Hour),
		reg("never", "1001", "sip:3", time.Hour))
	if got := keysOf(lookup(t, s, "1001")); !slices.Equal(got, []string{"alive sip:1", "dying sip:2"}) {
		t.Fatalf("LookupAOR = %q; want alive's and dying's (never has no heartbeat)", got)
	}
	eventually(t, "dead server's registrations to vanish", func() bool {
		return slices.Equal(keysOf(lookup(t, s, "1001")), []string{"alive sip:1"})
	})
	if a := all(t, s); !slices.Equal(a, []string{"alive 1001 sip:1"}) {
		t.Fatalf("AllRegistrations = %q", a)
	}
	beat(t, s, time.Minute, "dying")
	if got := keysOf(lookup(t, s, "1001")); !slices.Equal(got, []string{"alive sip:1", "dying sip:2"}) {
		t.Fatalf("LookupAOR after the server beat again = %q", got)
	}
	_ = c
}

func testRegBadInput(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	for name, r := range map[string]state.Registration{
		"no server":  reg("", "1001", "sip:x", time.Hour),
		"no aor":     reg("a", "", "sip:x", time.Hour),
		"no contact": reg("a", "1001", "", time.Hour),
		"no expiry":  {Server: "a", AOR: "1001", Contact: "sip:x"},
		"NUL":        reg("a\x00b", "1001", "sip:x", time.Hour),
	} {
		if err := s.PutRegistration(c, r); err == nil {
			t.Errorf("PutRegistration %s: no error", name)
		}
	}
	if err := s.ReplaceRegistrations(c, "", nil); err == nil {
		t.Errorf("ReplaceRegistrations without server: no error")
	}
	if _, err := s.LookupAOR(c, ""); err == nil {
		t.Errorf("LookupAOR of an empty AOR: no error")
	}
}
