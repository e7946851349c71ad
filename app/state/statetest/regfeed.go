package statetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func watchRegs(t *testing.T, s state.Store) <-chan state.RegistrationEvent {
	t.Helper()
	w, ok := s.(state.RegistrationWatcher)
	if !ok {
		t.Skipf("%T has no registration feed", s)
	}
	ch, err := w.WatchRegistrations(ctx(t))
	if err != nil {
		t.Fatalf("WatchRegistrations: %v", err)
	}
	return ch
}

// describe names an event for comparisons: kind, server, aor, contact.
func describe(e state.RegistrationEvent) string {
	kind := map[state.EventKind]string{state.Added: "added", state.Removed: "removed", state.Resync: "resync",
		state.ServerAlive: "alive", state.ServerDown: "down"}[e.Kind]
	r := e.Registration
	switch e.Kind {
	case state.ServerAlive, state.ServerDown, state.Resync:
		return fmt.Sprintf("%s %s", kind, r.Server)
	}
	return fmt.Sprintf("%s %s %s %s", kind, r.Server, r.AOR, r.Contact)
}

// nextRegEvents reads n events, skipping heartbeats (ServerAlive), and
// returns them described and sorted (one write may publish in any order).
func nextRegEvents(t *testing.T, ch <-chan state.RegistrationEvent, n int, what string) ([]string, []state.RegistrationEvent) {
	t.Helper()
	var out []string
	var evs []state.RegistrationEvent
	for len(out) < n {
		e := recv(t, ch, what)
		if e.Kind == state.ServerAlive {
			continue
		}
		out, evs = append(out, describe(e)), append(evs, e)
	}
	slices.Sort(out)
	return out, evs
}

// testWatchRegistrations: every registration write and heartbeat of any
// agent reaches every watcher, with the whole registration on Added.
func testWatchRegistrations(t *testing.T, open Open) {
	s1, s2, c := open(t), open(t), ctx(t)
	w1, w2 := watchRegs(t, s1), watchRegs(t, s2)
	before := time.Now()
	beat(t, s2, time.Hour, "pbx-a")
	for i, w := range []<-chan state.RegistrationEvent{w1, w2} {
		e := recv(t, w, "heartbeat")
		if e.Kind != state.ServerAlive || e.Registration.Server != "pbx-a" || e.Registration.Expires.Before(before.Add(time.Hour).Add(-time.Millisecond)) {
			t.Fatalf("watcher %d: heartbeat gave %+v; want ServerAlive pbx-a until an hour from now", i+1, e)
		}
	}

	r := reg("pbx-a", "1001", "sip:1001@192.0.2.1:5060", time.Hour)
	put(t, s1, r)
	for i, w := range []<-chan state.RegistrationEvent{w1, w2} {
		if _, evs := nextRegEvents(t, w, 1, "put"); evs[0].Kind != state.Added || !sameReg(evs[0].Registration, r) {
			t.Fatalf("watcher %d: put gave %+v; want Added %+v", i+1, evs[0], r)
		}
	}
	// A refresh is published too: the new expiry matters to a copy.
	r.Expires = r.Expires.Add(time.Minute)
	put(t, s2, r)
	if _, evs := nextRegEvents(t, w1, 1, "refresh"); evs[0].Kind != state.Added || !sameReg(evs[0].Registration, r) {
		t.Fatalf("refresh gave %+v; want Added %+v", evs[0], r)
	}
	if err := s2.DeleteRegistration(c, r.Server, r.AOR, r.Contact); err != nil {
		t.Fatalf("DeleteRegistration: %v", err)
	}
	if got, _ := nextRegEvents(t, w1, 1, "delete"); got[0] != "removed pbx-a 1001 sip:1001@192.0.2.1:5060" {
		t.Fatalf("delete gave %q", got)
	}
	// Putting an expired registration removes it.
	put(t, s1, reg("pbx-a", "1003", "sip:1003@192.0.2.3:5060", time.Hour))
	put(t, s1, reg("pbx-a", "1003", "sip:1003@192.0.2.3:5060", -time.Second))
	if got, _ := nextRegEvents(t, w1, 2, "put expired"); !slices.Equal(got, []string{
		"added pbx-a 1003 sip:1003@192.0.2.3:5060", "removed pbx-a 1003 sip:1003@192.0.2.3:5060"}) {
		t.Fatalf("put, then put expired gave %q", got)
	}

	// A full replace: the new set is added, what is left out removed;
	// another server's registrations are untouched.
	put(t, s1, reg("pbx-a", "1001", "sip:1001@192.0.2.1:5060", time.Hour), reg("pbx-b", "1001", "sip:1001@192.0.2.9:5060", time.Hour))
	if got, _ := nextRegEvents(t, w1, 2, "two puts"); len(got) != 2 {
		t.Fatalf("two puts gave %q", got)
	}
	err := s2.ReplaceRegistrations(c, "pbx-a", []state.Registration{
		reg("pbx-a", "1002", "sip:1002@192.0.2.2:5060", time.Hour), reg("x", "1004", "sip:1004@192.0.2.4:5060", time.Hour)})
	if err != nil {
		t.Fatalf("ReplaceRegistrations: %v", err)
	}
	want := []string{"added pbx-a 1002 sip:1002@192.0.2.2:5060", "added pbx-a 1004 sip:1004@192.0.2.4:5060",
		"removed pbx-a 1001 sip:1001@192.0.2.1:5060"}
	if got, _ := nextRegEvents(t, w1, 3, "replace"); !slices.Equal(got, want) {
		t.Fatalf("replace gave %q; want %q", got, want)
	}
	// Withdrawing a server is a replace with nothing.
	if err := s1.ReplaceRegistrations(c, "pbx-a", nil); err != nil {
		t.Fatalf("ReplaceRegistrations: %v", err)
	}
	if got, _ := nextRegEvents(t, w1, 2, "withdraw"); !slices.Equal(got, []string{
		"removed pbx-a 1002 sip:1002@192.0.2.2:5060", "removed pbx-a 1004 sip:1004@192.0.2.4:5060"}) {
		t.Fatalf("withdraw gave %q", got)
	}
}

// testWatchRegistrationsServerDown: a server whose heartbeat ends is
// announced as down (Redis notices at another server's next heartbeat,
// the embedded store at its janitor's next sweep).
func testWatchRegistrationsServerDown(t *testing.T, open Open) {
	s := open(t)
	w := watchRegs(t, s)
	beat(t, s, 300*time.Millisecond, "pbx-dead")
	if e := recv(t, w, "heartbeat"); e.Kind != state.ServerAlive || e.Registration.Server != "pbx-dead" {
		t.Fatalf("heartbeat gave %+v", e)
	}
	eventually(t, "pbx-dead's heartbeat to end", func() bool {
		live, err := s.Servers(ctx(t))
		if err != nil {
			t.Fatalf("Servers: %v", err)
		}
		_, ok := live["pbx-dead"]
		return !ok
	})
	beat(t, s, time.Hour, "pbx-live")
	for {
		e := recv(t, w, "server down")
		if e.Kind == state.ServerAlive && e.Registration.Server == "pbx-live" {
			continue
		}
		if e.Kind != state.ServerDown || e.Registration.Server != "pbx-dead" {
			t.Fatalf("got %+v; want ServerDown pbx-dead", e)
		}
		return
	}
}

// RegistrationResync checks that a registration watch of s says Resync
// after interrupt (a Redis restart or dropped subscription; a flood the
// reader cannot keep up with) and then goes on delivering: writes made
// during the gap may be lost, which is what Resync says. interrupt must not
// read the feed.
func RegistrationResync(t *testing.T, s state.Store, interrupt func(t *testing.T)) {
	t.Helper()
	w := watchRegs(t, s)
	r := reg("pbx-a", "1001", "sip:1001@192.0.2.1:5060", time.Hour)
	put(t, s, r)
	if _, evs := nextRegEvents(t, w, 1, "before the interruption"); evs[0].Kind != state.Added {
		t.Fatalf("got %+v; want Added", evs[0])
	}
	interrupt(t)
	for e := recv(t, w, "Resync"); e.Kind != state.Resync; e = recv(t, w, "Resync") {
	}
	after := reg("pbx-a", "1002", "sip:1002@192.0.2.2:5060", time.Hour)
	putUntil(t, s, after)
	for {
		e := recv(t, w, "after the interruption")
		if e.Kind == state.Added && sameReg(e.Registration, after) {
			return
		}
	}
}

// putUntil retries a put while the store comes back.
func putUntil(t *testing.T, s state.Store, r state.Registration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := s.PutRegistration(ctx(t), r)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PutRegistration never succeeded: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
