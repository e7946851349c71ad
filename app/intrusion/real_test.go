package intrusion

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/firewall/nft"
	"github.com/asterisksupport/doorman/integration/measure"
	"github.com/prometheus/client_golang/prometheus"
)

// These tests use the real stores (redis-server, the embedded store) and a
// real nftables set inside a network namespace, with the real clock.

func realConfig() Config {
	c := DefaultConfig()
	c.BanTime = time.Second
	c.PermanentAfter = 2
	c.ReconcileInterval = 100 * time.Millisecond
	return c
}

// runReal starts a monitor on real time and stops it when the test ends.
func runReal(t testing.TB, cfg Config, store state.Bans, fw firewall.Firewall, server string) *Monitor {
	t.Helper()
	m, _ := runRealStop(t, cfg, store, fw, server)
	return m
}

// runRealStop is runReal that also returns a function stopping the monitor.
func runRealStop(t testing.TB, cfg Config, store state.Bans, fw firewall.Firewall, server string) (*Monitor, func()) {
	t.Helper()
	m, err := New(cfg, Deps{Store: store, Firewall: fw, Server: server, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	eventually(t, "monitor ready", m.Ready)
	return m, stop
}

// eventually is waitFor with room for real reconnects (Redis clients and
// their feeds come back within seconds).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !netnstest.WaitFor(20*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// enforces reports whether m holds an unexpired ban of p (the metric and the
// monitor's decision come before the firewall Add, so the set alone can
// look "lifted" before the ban is even applied).
func enforces(m *Monitor, p netip.Prefix) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bannedLocked(p, time.Now())
}

func openRedis(t testing.TB, addr string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(context.Background(), redisstore.Config{Addrs: []string{addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRealRedisCluster(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	storeA, storeB := openRedis(t, srv.Addr), openRedis(t, srv.Addr)
	fwA, fwB := newFakeFirewall(realClock{}), newFakeFirewall(realClock{})
	a := runReal(t, realConfig(), storeA, fwA, "pbx-a")
	b := runReal(t, realConfig(), storeB, fwB, "pbx-b")
	p := pfx("198.51.100.20/32")
	banned := func(f *fakeFirewall, perm bool) func() bool {
		return func() bool { in, pm := f.has(p); return in && pm == perm }
	}
	lifted := func() bool {
		in1, _ := fwA.has(p)
		in2, _ := fwB.has(p)
		return !in1 && !in2 && !enforces(a, p) && !enforces(b, p)
	}

	// Temporary on both servers, lifted after ban_time, twice (once
	// decided on each server), then permanent everywhere.
	// (Counted by the metric rather than watched in the set: on a loaded
	// machine a 1 s ban could come and go between two polls.)
	temporary := func(m *Monitor, n float64) func() bool {
		return func() bool {
			return value(t, m.met.bans.WithLabelValues("temporary", "local"))+value(t, m.met.bans.WithLabelValues("temporary", "remote")) == n
		}
	}
	for i, m := range []*Monitor{a, b} {
		m.Handle(failed("198.51.100.20:5060", "r"+string(rune('0'+i))))
		eventually(t, "temporary ban on pbx-a", temporary(a, float64(i+1)))
		eventually(t, "temporary ban on pbx-b", temporary(b, float64(i+1)))
		eventually(t, "ban lifts", lifted)
	}
	a.Handle(failed("198.51.100.20:5060", "r3"))
	eventually(t, "permanent on pbx-a", banned(fwA, true))
	eventually(t, "permanent on pbx-b", banned(fwB, true))
	list, err := b.List(context.Background())
	if err != nil || len(list) != 1 || !list[0].Permanent || list[0].Server != "pbx-a" ||
		!strings.Contains(list[0].Reason, "temporary bans") {
		t.Fatalf("List on pbx-b = %+v, %v", list, err)
	}

	// Unban anywhere lifts it everywhere and resets the shared counters.
	if err := b.Unban(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unban everywhere", lifted)
	if n, err := storeA.Incr(context.Background(), escalationKey(p), time.Minute); err != nil || n != 1 {
		t.Fatalf("escalation counter after unban: %d, %v (want 1: reset)", n, err)
	}
	_ = storeA.Reset(context.Background(), escalationKey(p))

	// Redis down: pbx-a still bans at once, and pbx-b gets it when Redis is back.
	q := pfx("198.51.100.21/32")
	srv.Stop()
	a.Handle(failed("198.51.100.21:5060", "down"))
	eventually(t, "local ban with Redis down", func() bool { in, _ := fwA.has(q); return in })
	if in, _ := fwB.has(q); in {
		t.Fatal("pbx-b got a ban through a dead Redis")
	}
	if err := a.Ban(context.Background(), pfx("203.0.113.0/24"), 0, "while down"); err == nil {
		t.Fatal("operator ban with Redis down reported success")
	}
	srv.Restart()
	// (The 1 s ban of q may well have expired by then, and an expired ban
	// is not worth writing; the permanent one must arrive.)
	eventually(t, "catch-up reaches pbx-b", func() bool {
		in, perm := fwB.has(pfx("203.0.113.0/24"))
		return in && perm
	})
}

func TestRealEmbeddedStore(t *testing.T) {
	store, err := embedded.Open(t.TempDir()+"/state.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	fw := newFakeFirewall(realClock{})
	m := runReal(t, realConfig(), store, fw, "solo")
	p := pfx("2001:db8:77::/64")
	for i := range 2 {
		m.Handle(failed("[2001:db8:77::1]:5060", "e"+string(rune('0'+i))))
		eventually(t, "temporary ban", func() bool { return value(t, m.met.bans.WithLabelValues("temporary", "local")) == float64(i+1) })
		eventually(t, "lift", func() bool { in, _ := fw.has(p); return !in && !enforces(m, p) })
	}
	m.Handle(failed("[2001:db8:77::2]:5060", "e3"))
	eventually(t, "permanent ban", func() bool { _, perm := fw.has(p); return perm })
	// The store gets it shortly after the kernel (writes are gathered).
	eventually(t, "permanent ban stored", func() bool {
		bans, err := store.ListBans(context.Background())
		return err == nil && len(bans) == 1 && bans[0].Permanent && bans[0].Prefix == p
	})
	if err := m.Unban(context.Background(), pfx("2001:db8:77::9/128")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unban", func() bool { in, _ := fw.has(p); return !in })
}

func TestRealNftables(t *testing.T) {
	ns := netnstest.New(t)
	newFW := func() *nft.Firewall {
		f, err := nft.New(nft.Config{NetNS: ns.Path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	store, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := realConfig()
	cfg.BanTime = time.Minute
	fw := newFW()
	m, stop := runRealStop(t, cfg, store, fw, "pbx-a")
	want := map[netip.Prefix]bool{ // prefix -> permanent
		pfx("198.51.100.30/32"): false,
		pfx("2001:db8:1::/64"):  false,
		pfx("203.0.113.0/24"):   true,
	}
	m.Handle(failed("198.51.100.30:5060", "n1"))
	m.Handle(failed("[2001:db8:1::abcd]:5060", "n2"))
	if err := m.Ban(context.Background(), pfx("203.0.113.0/24"), 0, "operator"); err != nil {
		t.Fatal(err)
	}
	kernelHasAll := func(f firewall.Firewall) func() bool {
		return func() bool {
			es, err := f.List(context.Background())
			if err != nil {
				return false
			}
			got := map[netip.Prefix]bool{}
			for _, e := range es {
				got[e.Prefix] = e.Permanent()
				if !e.Permanent() && (e.Timeout <= 0 || e.Timeout > time.Minute) {
					return false
				}
			}
			for p, perm := range want {
				if g, ok := got[p]; !ok || g != perm {
					return false
				}
			}
			return true
		}
	}
	eventually(t, "bans in the kernel set", kernelHasAll(fw))
	out := ns.MustRun(t, "nft", "list", "ruleset")
	if !strings.Contains(out, "198.51.100.30") || !strings.Contains(out, "2001:db8:1:: timeout") {
		t.Fatalf("nft list ruleset:\n%s", out)
	}

	// Someone flushes the ruleset: doorman restores table, sets and bans.
	ns.MustRun(t, "nft", "flush", "ruleset")
	eventually(t, "repair after flush", kernelHasAll(fw))
	if got := value(t, m.met.repairs); got < 1 {
		t.Errorf("repairs = %v", got)
	}

	// A fresh agent on an empty kernel restores every ban from the store.
	stop()
	ns.MustRun(t, "nft", "flush", "ruleset")
	fw2 := newFW()
	_ = runReal(t, cfg, store, fw2, "pbx-a")
	eventually(t, "restore at start", kernelHasAll(fw2))
}

// BenchmarkEndToEnd is BenchmarkHandlePaced against the real parts: a
// redis-server on loopback through redisstore, and the nftables backend in
// a network namespace. It feeds 50,000 events per second (12,500 failed
// attempts, each a new ban) and reports ban latency from the event to the
// netlink Add returning, events/s, and doorman's CPU per 10,000 attempts
// (redis-server's own CPU is not doorman's and is not counted).
func BenchmarkEndToEnd(b *testing.B) {
	for _, batch := range []bool{false, true} {
		name := "handle=event"
		if batch {
			name = "handle=batch"
		}
		b.Run(name, func(b *testing.B) { benchEndToEnd(b, batch) })
	}
}

func benchEndToEnd(b *testing.B, batch bool) {
	ns := netnstest.New(b)
	srv := redistest.Start(b)
	store := openRedis(b, srv.Addr)
	fw, err := nft.New(nft.Config{NetNS: ns.Path}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fw.Close() })
	m, err := New(DefaultConfig(), Deps{Store: store, Firewall: fw, Server: "pbx-a"})
	if err != nil {
		b.Fatal(err)
	}
	r := &benchRun{m: m, stopped: make(chan struct{})}
	m.onApplied = func(d time.Duration) {
		r.mu.Lock()
		r.lat = append(r.lat, d)
		r.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { _ = m.Run(ctx); close(r.stopped) }()
	defer r.stop()
	eventually(b, "ready", m.Ready)

	const perTick = 50 // events per millisecond
	attempts := max(b.N/4, perTick)
	evs := attackEvents(attempts)
	b.ResetTimer()
	cpu0, t0 := measure.CPUSelf(), time.Now()
	for i := 0; i < len(evs); i += perTick {
		feed(m, evs[i:min(i+perTick, len(evs))], batch)
		time.Sleep(time.Until(t0.Add(time.Duration(i/perTick+1) * time.Millisecond)))
	}
	eventually(b, "every ban applied", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.lat) >= attempts
	})
	wall, cpu := time.Since(t0), measure.CPUSelf()-cpu0
	eventually(b, "every ban stored", func() bool { return m.writer.pendingLen() == 0 })
	b.StopTimer()
	r.report(b, len(evs), attempts, wall, cpu)
	es, err := fw.List(context.Background())
	if err != nil || len(es) != attempts {
		b.Fatalf("kernel holds %d entries (%v), want %d", len(es), err, attempts)
	}
}
