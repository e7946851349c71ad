package blf

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari/aritest"
)

// storedNow is stored without failing the test when the store errs (it
// may be restarting): "" then.
func storedNow(s Store, server, device string) string {
	all, err := s.DeviceStates(context.Background())
	if err != nil {
		return ""
	}
	for _, ds := range all {
		if ds.Server == server && ds.Device == device {
			return ds.State
		}
	}
	return ""
}

// TestStoreRestartedEmptyIsRepublished: a store that comes back empty
// (Redis without persistence) gets every server's states again, without
// any change on the phones, and the lamps come back.
func TestStoreRestartedEmptyIsRepublished(t *testing.T) {
	run := func(t *testing.T, store Store, n map[string]*node, restart func()) {
		a, b := n["a"], n["b"]
		a.ami.set([2]string{"PJSIP/1001", InUse}, [2]string{"PJSIP/1002", Ringing})
		a.ari.Emit("PJSIP/1001", InUse)
		a.ari.Emit("PJSIP/1002", Ringing)
		waitStasis(t, b, "Stasis:1001", InUse)
		waitStasis(t, b, "Stasis:1002", Ringing)
		restart()
		eventually(t, "a's states stored again", func() bool {
			return storedNow(store, "a", "PJSIP/1001") == InUse && storedNow(store, "a", "PJSIP/1002") == Ringing
		})
		waitStasis(t, b, "Stasis:1001", InUse)
		waitStasis(t, b, "Stasis:1002", Ringing)
		a.ari.Emit("PJSIP/1001", NotInUse) // and changes flow again
		waitStasis(t, b, "Stasis:1001", NotInUse)
	}
	t.Run("store=mem", func(t *testing.T) {
		store := newMemStore()
		_, n := clusterOn(t, func() Store { return store }, "a", "b")
		run(t, store, n, store.restartEmpty)
	})
	t.Run("store=redis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("short: no redis-server")
		}
		srv, open := redisServerOpener(t)
		store, n := clusterOn(t, open, "a", "b")
		run(t, store, n, srv.Restart)
	})
}

// TestServerLiveAgainAfterEmptyRestartIsReloaded: after an empty restart,
// a's snapshot reaches the store before b resubscribed (b misses its
// events) and before a's heartbeat, so b's reload skips a. b's last live
// set, read before the outage, still lists a: when a beats again, b must
// read a's states rather than recompute its view without them.
func TestServerLiveAgainAfterEmptyRestartIsReloaded(t *testing.T) {
	store, n := cluster(t, "a", "b")
	a, b := n["a"], n["b"]
	a.ami.set([2]string{"PJSIP/1001", InUse})
	a.ari.Emit("PJSIP/1001", InUse)
	waitStasis(t, b, "Stasis:1001", InUse)

	store.set(func(s *memStore) {
		s.serversErr = errors.New("store down") // b keeps its live set {a, b}
		s.mute = true                           // b is not resubscribed yet
		s.hold = map[string]bool{"a": true}     // a's heartbeat is not back yet
	})
	store.restartEmpty()
	eventually(t, "a's snapshot stored", func() bool { return store.has("a", "PJSIP/1001") == InUse })
	waitStasis(t, b, "Stasis:1001", Unavailable) // b reloaded without a

	store.set(func(s *memStore) { s.mute, s.hold = false, nil })
	eventually(t, "a beats again", func() bool {
		var ok bool
		store.set(func(s *memStore) { _, ok = s.beats["a"] })
		return ok
	})
	store.set(func(s *memStore) { s.serversErr = nil })
	waitStasis(t, b, "Stasis:1001", InUse)
}

// TestPeriodicSnapshotRepairsStore: states the store lost without any
// signal come back within reconcile_interval.
func TestPeriodicSnapshotRepairsStore(t *testing.T) {
	store := newMemStore()
	cfg := testConfig()
	cfg.ReconcileInterval = 200 * time.Millisecond
	a := startNode(t, store, "a", cfg)
	a.ami.set([2]string{"PJSIP/1001", InUse})
	a.ari.Emit("PJSIP/1001", InUse)
	eventually(t, "a's state stored", func() bool { return store.has("a", "PJSIP/1001") == InUse })
	store.set(func(s *memStore) { delete(s.states, source{"a", "PJSIP/1001"}) }) // silently lost
	eventually(t, "a's state stored again", func() bool { return store.has("a", "PJSIP/1001") == InUse })
}

// TestWithoutAMIResyncStoresPublishedAgain: with no AMI for snapshots, a
// store that restarted empty gets the states published before again.
func TestWithoutAMIResyncStoresPublishedAgain(t *testing.T) {
	store := newMemStore()
	fake := aritest.New("id-a")
	mon, err := New(testConfig(), Deps{Store: store, ARI: fake, Server: "a", Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	fake.Emit("PJSIP/1001", InUse)
	eventually(t, "a's state stored", func() bool { return store.has("a", "PJSIP/1001") == InUse })
	store.restartEmpty()
	eventually(t, "a's state stored again", func() bool { return store.has("a", "PJSIP/1001") == InUse })
}

// TestListingOlderThanWriteDoesNotUndoIt: rewriteAll lists Asterisk's
// states while a worker may finish a write; the listing, older than the
// write, must not make the writer believe the old value (and write again).
func TestListingOlderThanWriteDoesNotUndoIt(t *testing.T) {
	mon, err := New(testConfig(), Deps{Store: newMemStore(), ARI: aritest.New("id-a"), Server: "a"})
	if err != nil {
		t.Fatal(err)
	}
	w := mon.w
	wrote := func(name, st string) { // what work does after a good PUT
		w.mu.Lock()
		defer w.mu.Unlock()
		w.written[name] = st
		w.writes++
		w.lastWrite[name] = w.writes
	}
	wrote("Stasis:1", InUse)
	before := w.mark()
	wrote("Stasis:2", Ringing) // lands after the listing was taken
	w.observe(map[string]string{"Stasis:1": Busy, "Stasis:3": NotInUse}, before)
	want := map[string]string{"Stasis:1": Busy, "Stasis:2": Ringing, "Stasis:3": NotInUse}
	if !maps.Equal(w.written, want) {
		t.Fatalf("written = %v, want %v", w.written, want)
	}
	w.observe(map[string]string{}, w.mark()) // a listing after every write wins
	if len(w.written) != 0 {
		t.Fatalf("written = %v after an empty listing, want nothing", w.written)
	}
}
