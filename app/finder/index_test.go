package finder

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
)

// feedTap wraps a real store: it counts lookups and full loads, can drop
// feed events (a gap in the feed) and inject others.
type feedTap struct {
	feedStore
	lookups, loads, dropped atomic.Int64
	drop                    atomic.Bool
	inject                  chan state.RegistrationEvent
}

func (f *feedTap) LookupAOR(ctx context.Context, aor string) ([]state.Registration, error) {
	f.lookups.Add(1)
	return f.feedStore.LookupAOR(ctx, aor)
}

func (f *feedTap) AllRegistrations(ctx context.Context) ([]state.Registration, error) {
	f.loads.Add(1)
	return f.feedStore.AllRegistrations(ctx)
}

func (f *feedTap) WatchRegistrations(ctx context.Context) (<-chan state.RegistrationEvent, error) {
	in, err := f.feedStore.WatchRegistrations(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan state.RegistrationEvent)
	go func() {
		defer close(out)
		for {
			var e state.RegistrationEvent
			select {
			case <-ctx.Done():
				return
			case e = <-f.inject:
			case ev, ok := <-in:
				if !ok {
					return
				}
				if f.drop.Load() {
					f.dropped.Add(1)
					continue
				}
				e = ev
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// indexRig runs an index on a tapped embedded store with a clock the test
// can move forward.
type indexRig struct {
	st     *feedTap
	x      *index
	mu     sync.Mutex
	offset time.Duration
}

func (r *indexRig) now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Now().Add(r.offset)
}

func (r *indexRig) advance(d time.Duration) { r.mu.Lock(); r.offset += d; r.mu.Unlock() }

func newIndexRig(t *testing.T, ttl time.Duration) *indexRig {
	t.Helper()
	es, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Close() })
	return newIndexRigOn(t, es, ttl)
}

func newIndexRigOn(t *testing.T, st feedStore, ttl time.Duration) *indexRig {
	t.Helper()
	r := &indexRig{st: &feedTap{feedStore: st, inject: make(chan state.RegistrationEvent)}}
	r.x = newIndex(r.st, r.now, ttl, 0, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.x.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *indexRig) put(t *testing.T, server, aor, ep string, expires time.Time) {
	t.Helper()
	reg := testReg(server, aor, expires)
	reg.Endpoint = ep
	if err := r.st.PutRegistration(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
}

func (r *indexRig) servers(t *testing.T, name string) []string {
	t.Helper()
	regs, err := r.x.locate(context.Background(), name)
	if err != nil {
		t.Fatalf("locate %s: %v", name, err)
	}
	out := make([]string, len(regs))
	for i, reg := range regs {
		out[i] = reg.Server
	}
	return out
}

// visible waits until name is registered on exactly the servers want
// (in order of registration within one server set of size <= 1 here).
func (r *indexRig) visible(t *testing.T, what, name string, want ...string) {
	t.Helper()
	waitFor(t, what, func() bool {
		got := r.servers(t, name)
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	})
}

// TestIndexFollowsFeed: once loaded, the index answers hits and misses
// from memory and follows every change without a reload: a registration
// on another server appears, an unregister disappears, an expired entry
// and a server past its heartbeat are hidden at their time, a gap in the
// feed (Resync) and a server that comes back reload it whole.
func TestIndexFollowsFeed(t *testing.T) {
	for name, st := range realStores(t) {
		t.Run(name, func(t *testing.T) { testIndexFollowsFeed(t, newIndexRigOn(t, st.(feedStore), time.Hour)) })
	}
}

func testIndexFollowsFeed(t *testing.T, r *indexRig) {
	ctx := context.Background()
	now := time.Now()
	for _, srv := range []string{"aim-b", "aim-c", "aim-d"} {
		_ = r.st.Heartbeat(ctx, srv, time.Hour)
	}
	r.put(t, "aim-b", "1001", "1001", now.Add(time.Hour))
	waitFor(t, "loaded", func() bool { return r.x.tab.Load() != nil })
	r.visible(t, "loaded 1001", "1001", "aim-b")
	loads := r.st.loads.Load()

	// A registration on another server, and one by endpoint name.
	r.put(t, "aim-c", "1002", "1002", now.Add(time.Hour))
	r.put(t, "aim-c", "1003-desk", "1003", now.Add(time.Hour))
	r.visible(t, "1002 on aim-c", "1002", "aim-c")
	r.visible(t, "1003 by endpoint", "1003", "aim-c")
	// A phone that moves: gone from aim-b, on aim-c.
	_ = r.st.DeleteRegistration(ctx, "aim-b", "1001", "sip:1001@192.0.2.1:5060")
	r.put(t, "aim-c", "1001", "1001", now.Add(time.Hour))
	r.visible(t, "1001 moved", "1001", "aim-c")
	// Unregister.
	_ = r.st.DeleteRegistration(ctx, "aim-c", "1003-desk", "sip:1003-desk@192.0.2.1:5060")
	r.visible(t, "1003 unregistered", "1003")
	r.visible(t, "1003-desk unregistered", "1003-desk")

	// Expiry: hidden at its time by the index itself.
	r.put(t, "aim-c", "1004", "1004", now.Add(time.Minute))
	r.visible(t, "1004", "1004", "aim-c")
	r.advance(2 * time.Minute)
	if got := r.servers(t, "1004"); len(got) != 0 {
		t.Fatalf("expired 1004 returned on %q", got)
	}
	if got := r.servers(t, "1002"); len(got) != 1 {
		t.Fatalf("1002 lost: %q", got)
	}

	// A dead server: hidden once its last heartbeat has run out (this
	// beat says exactly when).
	_ = r.st.Heartbeat(ctx, "aim-d", 10*time.Minute)
	r.put(t, "aim-d", "1005", "1005", now.Add(time.Hour))
	r.visible(t, "1005 on aim-d", "1005", "aim-d")
	r.advance(9 * time.Minute) // 11 minutes after aim-d's beat
	if got := r.servers(t, "1005"); len(got) != 0 {
		t.Fatalf("1005 returned on dead aim-d: %q", got)
	}
	// ServerDown hides a server at once; its next beat shows it again
	// (the index kept its registrations: no reload).
	r.st.inject <- state.RegistrationEvent{Kind: state.ServerDown, Registration: state.Registration{Server: "aim-c"}}
	r.visible(t, "aim-c down", "1002")
	r.advance(-11 * time.Minute)
	_ = r.st.Heartbeat(ctx, "aim-c", time.Hour)
	r.visible(t, "aim-c back", "1002", "aim-c")
	if n := r.st.loads.Load(); n != loads {
		t.Fatalf("%d reloads while following the feed", n-loads)
	}
	if n := r.st.lookups.Load(); n != 0 {
		t.Fatalf("%d store lookups while the index was loaded", n)
	}

	// A gap in the feed: a change is lost, Resync reloads it.
	r.st.drop.Store(true)
	r.put(t, "aim-b", "1006", "1006", now.Add(time.Hour))
	waitFor(t, "event dropped", func() bool { return r.st.dropped.Load() == 1 })
	r.st.drop.Store(false)
	if got := r.servers(t, "1006"); len(got) != 0 {
		t.Fatalf("1006 seen through a dropped event: %q", got)
	}
	r.st.inject <- state.RegistrationEvent{Kind: state.Resync}
	r.visible(t, "1006 after Resync", "1006", "aim-b")

	// A server dead at the last load (its registrations were not read)
	// that beats again: reload.
	loads = r.st.loads.Load()
	r.st.drop.Store(true)
	r.put(t, "aim-f", "1007", "1007", now.Add(time.Hour)) // aim-f never beat: not loaded
	waitFor(t, "event dropped", func() bool { return r.st.dropped.Load() == 2 })
	r.st.drop.Store(false)
	_ = r.st.Heartbeat(ctx, "aim-f", time.Hour)
	r.visible(t, "1007 after aim-f's first beat", "1007", "aim-f")
	if r.st.loads.Load() == loads {
		t.Fatal("no reload for a server the index had not read")
	}
}

// TestIndexSilentFeed: a feed silent for longer than a heartbeat (no
// server beat: the feed or the store is down) is not trusted.
func TestIndexSilentFeed(t *testing.T) {
	r := newIndexRig(t, time.Minute)
	_ = r.st.Heartbeat(context.Background(), "aim-b", time.Hour)
	r.put(t, "aim-b", "1001", "1001", time.Now().Add(time.Hour))
	r.visible(t, "loaded", "1001", "aim-b")
	lookups := r.st.lookups.Load()
	r.advance(2 * time.Minute)
	if got := r.servers(t, "1001"); len(got) != 1 || r.st.lookups.Load() != lookups+1 {
		t.Fatalf("silent feed: %q after %d store lookups", got, r.st.lookups.Load()-lookups)
	}
}

// TestIndexSweep drops expired registrations from memory.
func TestIndexSweep(t *testing.T) {
	r := newIndexRig(t, time.Hour)
	_ = r.st.Heartbeat(context.Background(), "aim-b", time.Hour)
	r.put(t, "aim-b", "1001-desk", "1001", time.Now().Add(time.Minute))
	r.put(t, "aim-b", "1002", "1002", time.Now().Add(time.Hour))
	r.visible(t, "loaded", "1001", "aim-b")
	waitFor(t, "both indexed", func() bool { return r.x.size.Load() == 2 })
	r.advance(2 * time.Minute)
	r.x.sweep()
	t0 := r.x.tab.Load()
	for _, name := range []string{"1001", "1001-desk"} {
		sh := t0.shard(name)
		sh.mu.RLock()
		_, ok := sh.byName[name]
		sh.mu.RUnlock()
		if ok {
			t.Errorf("%s still held after the sweep", name)
		}
	}
	if n := r.x.size.Load(); n != 1 {
		t.Errorf("size %d after the sweep, want 1", n)
	}
}
