package blf

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// hopLog collects the trace of every monitor of a benchmark.
type hopLog struct {
	mu   sync.Mutex
	hops []Hop
}

func (h *hopLog) add(x Hop) {
	h.mu.Lock()
	h.hops = append(h.hops, x)
	h.mu.Unlock()
}

func (h *hopLog) reset() {
	h.mu.Lock()
	h.hops = h.hops[:0]
	h.mu.Unlock()
}

// count counts the hops of stage caused by changes read after since.
func (h *hopLog) count(stage string, since time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, x := range h.hops {
		if x.Stage == stage && !x.Src.Before(since) {
			n++
		}
	}
	return n
}

const (
	benchServers = 3
	benchDevices = 10000
)

func benchDevice(server, i int) string { return fmt.Sprintf("PJSIP/%d%05d", server+1, i) }

// benchCluster starts benchServers monitors with benchDevices phones each
// (NOT_INUSE, from the AMI snapshot) and waits until every server has
// written all Stasis: states.
func benchCluster(b *testing.B, open func() Store, dial func(*node)) ([]*node, *hopLog) {
	store := open()
	b.Helper()
	log := &hopLog{}
	cfg := DefaultConfig()
	cfg.HeartbeatInterval = time.Second
	cfg.HeartbeatTTL = 10 * time.Second
	// Asterisk already holds the right Stasis: states (astdb after a
	// restart in steady state): the start-up rewrite must find nothing to do.
	seed := map[string]string{}
	for s := range benchServers {
		for i := range benchDevices {
			seed[fmt.Sprintf("Stasis:%d%05d", s+1, i)] = NotInUse
		}
	}
	var nodes []*node
	for s := range benchServers {
		o := nodeOpts{dial: dial, ready: func(n *node) {
			devs := make([][2]string, benchDevices)
			astdb := maps.Clone(seed)
			for i := range devs {
				devs[i] = [2]string{benchDevice(s, i), NotInUse}
				astdb[fmt.Sprintf("Stasis:%d%05d", s+1, i)] = Unavailable // own phones: nobody else has them
			}
			n.ami.set(devs...)
			n.mon.trace = log.add
			n.ast().seed(astdb)
		}}
		nodes = append(nodes, startNode(b, open(), fmt.Sprintf("srv%d", s), cfg, o))
	}
	// Settled: every phone in the store, every writer done, and no write
	// for a while (a cold start writes UNAVAILABLE first, then corrects).
	total := benchServers * benchDevices
	deadline := time.Now().Add(3 * time.Minute)
	writes := func() (sum float64) {
		for _, n := range nodes {
			sum += testutil.ToFloat64(n.mon.met.writes)
		}
		return sum
	}
	for {
		if time.Now().After(deadline) {
			b.Fatal("cluster did not settle")
		}
		all, _ := store.DeviceStates(context.Background())
		before := writes()
		time.Sleep(300 * time.Millisecond)
		ok := len(all) == total && writes() == before
		for _, n := range nodes {
			ok = ok && n.mon.w.settled(total)
		}
		if ok {
			break
		}
	}
	b.Logf("settled after %v start-up writes", writes())
	log.reset()
	return nodes, log
}

// runChanges makes n changes at rate per second (0: as fast as possible)
// and waits until each is written on the other servers.
func runChanges(b *testing.B, nodes []*node, log *hopLog, n int, rate float64) (start time.Time, took time.Duration) {
	b.Helper()
	cycle := []string{Ringing, InUse, NotInUse}
	start = time.Now()
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		s := i % benchServers
		dev := (i / benchServers) % benchDevices
		round := i / (benchServers * benchDevices)
		nodes[s].emit(benchDevice(s, dev), cycle[round%len(cycle)])
	}
	want := n * (benchServers - 1)
	deadline := time.Now().Add(2 * time.Minute)
	for log.count("written", start) < want {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d writes arrived", log.count("written", start), want)
		}
		time.Sleep(time.Millisecond)
	}
	return start, time.Since(start)
}

// report computes end-to-end and per-hop percentiles from the trace.
func report(b *testing.B, log *hopLog, since time.Time) {
	log.mu.Lock()
	defer log.mu.Unlock()
	type key struct { // times cross the store as wall clock: key by nanos
		src  int64
		name string
	}
	published := map[int64]time.Time{} // src -> publish done
	feed := map[key]time.Time{}
	var e2e, pub, deliver, put []time.Duration
	var hops []Hop
	for _, h := range log.hops {
		if !h.Src.Before(since) {
			hops = append(hops, h)
		}
	}
	for _, h := range hops {
		switch h.Stage {
		case "published":
			published[h.Src.UnixNano()] = h.At
			pub = append(pub, h.At.Sub(h.Src))
		case "feed":
			feed[key{h.Src.UnixNano(), h.Server + h.Name}] = h.At
		}
	}
	for _, h := range hops {
		switch h.Stage {
		case "feed":
			if p, ok := published[h.Src.UnixNano()]; ok {
				deliver = append(deliver, h.At.Sub(p))
			}
		case "written":
			e2e = append(e2e, h.At.Sub(h.Src))
			if f, ok := feed[key{h.Src.UnixNano(), h.Server + h.Name}]; ok {
				put = append(put, h.At.Sub(f))
			}
		}
	}
	ms := func(d []time.Duration, q float64) float64 {
		if len(d) == 0 {
			return 0
		}
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Nanoseconds()) / 1e6
	}
	b.ReportMetric(ms(e2e, .5), "p50_ms")
	b.ReportMetric(ms(e2e, .99), "p99_ms")
	b.ReportMetric(ms(pub, .5), "hop1_event_to_published_p50_ms")
	b.ReportMetric(ms(deliver, .5), "hop2_published_to_feed_p50_ms")
	b.ReportMetric(ms(put, .5), "hop3_feed_to_put_done_p50_ms")
	b.ReportMetric(ms(pub, .99), "hop1_p99_ms")
	b.ReportMetric(ms(deliver, .99), "hop2_p99_ms")
	b.ReportMetric(ms(put, .99), "hop3_p99_ms")
}

// BenchmarkPropagation: 3 servers x 10,000 phones; a device state change
// on one server until the Stasis: state is written on the two others.
//
//	store=mem:   in-memory store with a feed (fake)
//	store=redis: the real Redis store (redisstore) on a real redis-server,
//	             one client per server, pub/sub feed
//	ari=fake:    aritest.Fake, events and writes in memory (fake)
//	ari=sim:     ari.NewNative over real HTTP and websocket to the
//	             simulator's ARI handler (integration/asterisksim/ari) with
//	             a tiny in-memory core: the event comes in over the
//	             websocket, the PUT goes out over HTTP keep-alive
//
// AMI is a fake in every variant (it only gives the start-up snapshot).
func BenchmarkPropagation(b *testing.B) {
	mem := func(*testing.B) func() Store {
		m := newMemStore()
		return func() Store { return m }
	}
	redis := func(b *testing.B) func() Store { return redisOpener(b) }
	b.Run("store=mem/ari=fake", func(b *testing.B) { benchPropagation(b, mem, nil) })
	b.Run("store=redis/ari=fake", func(b *testing.B) { benchPropagation(b, redis, nil) })
	b.Run("store=redis/ari=sim", func(b *testing.B) { benchPropagation(b, redis, dialSim(b)) })
}

func benchPropagation(b *testing.B, mkStore func(*testing.B) func() Store, dial func(*node)) {
	for _, tc := range []struct {
		name string
		rate float64
	}{{"rate=50", 50}, {"rate=5000", 5000}, {"rate=max", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			nodes, log := benchCluster(b, mkStore(b), dial)
			b.ResetTimer()
			start, took := runChanges(b, nodes, log, b.N, tc.rate)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/took.Seconds(), "changes/s")
			report(b, log, start)
		})
	}
}
