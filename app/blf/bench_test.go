package blf

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/integration/measure"
)

// hopLog collects the trace of every monitor of a benchmark.
type hopLog struct {
	mu      sync.Mutex
	hops    []hop
	written atomic.Int64 // "written" hops since reset: waited on without the lock
}

func (h *hopLog) add(x hop) {
	h.mu.Lock()
	h.hops = append(h.hops, x)
	h.mu.Unlock()
	if x.Stage == "written" {
		h.written.Add(1)
	}
}

func (h *hopLog) reset() {
	h.mu.Lock()
	h.hops = h.hops[:0]
	h.written.Store(0)
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
			if sim, ok := n.asterisk.(*simAsterisk); ok {
				sim.Applied = func(name, state string, at time.Time) {
					log.add(hop{Server: n.name, Stage: "applied", Name: name, State: state, At: at})
				}
			}
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

// emitted is when the bench raised each change on its server's Asterisk,
// by device and state: the clock of a change starts there.
type emitted map[string][]time.Time

func (e emitted) key(device, state string) string { return device + "\x00" + state }

// at returns the latest raise of device in state not after received (the
// time the origin monitor read the event).
func (e emitted) at(device, state string, received time.Time) (time.Time, bool) {
	ts := e[e.key(device, state)]
	for i := len(ts) - 1; i >= 0; i-- {
		if !ts[i].After(received) {
			return ts[i], true
		}
	}
	return time.Time{}, false
}

// runChanges makes n changes at rate per second (0: as fast as possible)
// and waits until each is written on the other servers.
func runChanges(b *testing.B, nodes []*node, log *hopLog, seq *int, n int, rate float64) (start time.Time, took time.Duration, raised emitted) {
	b.Helper()
	cycle := []string{Ringing, InUse, NotInUse}
	raised = emitted{}
	start = time.Now()
	for j := range n {
		i := *seq // every device's next change differs from its last
		*seq++
		if rate > 0 {
			due := start.Add(time.Duration(float64(j) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		s := i % benchServers
		dev := (i / benchServers) % benchDevices
		round := i / (benchServers * benchDevices)
		device, st := benchDevice(s, dev), cycle[round%len(cycle)]
		k := raised.key(device, st)
		raised[k] = append(raised[k], time.Now())
		nodes[s].ami.update(device, st)
		nodes[s].emit(device, st)
	}
	want := n * (benchServers - 1)
	deadline := time.Now().Add(2 * time.Minute)
	for log.written.Load() < int64(want) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d writes arrived", log.count("written", start), want)
		}
		time.Sleep(time.Millisecond)
	}
	return start, time.Since(start), raised
}

// report computes end-to-end and per-hop percentiles from the trace. A
// change's clock starts when the bench raised it on the simulated server
// and stops when the Stasis: state is applied on both other servers: the
// moment their simulated cores store it (p50_ms, p99_ms; *_each_ms count
// every server on its own). With the fake ARI, which has no core, applied
// is the PUT's return. p50_put_ms, p99_put_ms stop instead when the PUT
// has returned on both others (the agents' view, one hop later). Hops: 0
// the event's way from Asterisk to the monitor (websocket; zero with the
// fake ARI), 1 event read -> store publish done, 2 publish done -> feed
// event on the other server (negative when the feed beats the publish
// reply), 3 feed event -> state applied by the other server's Asterisk,
// 4 applied -> PUT done.
func report(b *testing.B, log *hopLog, since time.Time, raised emitted) {
	log.mu.Lock()
	defer log.mu.Unlock()
	type key struct { // times cross the store as wall clock: key by nanos
		src  int64
		name string
	}
	published := map[int64]time.Time{} // src -> publish done
	origin := map[int64]time.Time{}    // src -> raised on the simulated server
	lastPut := map[int64]time.Time{}   // src -> latest PUT done elsewhere
	lastApplied := map[int64]time.Time{}
	writes := map[int64]int{}
	feed := map[key]time.Time{}
	applied := map[string][]time.Time{} // server, name, state -> applied at, in order
	var e2e, e2ePut, each, wire, pub, deliver, apply, ack []time.Duration
	var hops []hop
	for _, h := range log.hops {
		if h.Stage == "applied" && !h.At.Before(since) || h.Stage != "applied" && !h.Src.Before(since) {
			hops = append(hops, h)
		}
	}
	for _, h := range hops {
		switch h.Stage {
		case "published":
			published[h.Src.UnixNano()] = h.At
			pub = append(pub, h.At.Sub(h.Src))
			if t, ok := raised.at(h.Name, h.State, h.Src); ok {
				origin[h.Src.UnixNano()] = t
				wire = append(wire, h.Src.Sub(t))
			}
		case "feed":
			feed[key{h.Src.UnixNano(), h.Server + h.Name}] = h.At
		case "applied":
			k := h.Server + "\x00" + h.Name + "\x00" + h.State
			applied[k] = append(applied[k], h.At)
		}
	}
	// appliedAt is the latest store of the state the PUT done at put wrote.
	appliedAt := func(h hop) time.Time {
		ts := applied[h.Server+"\x00"+h.Name+"\x00"+h.State]
		for i := len(ts) - 1; i >= 0; i-- {
			if !ts[i].After(h.At) {
				return ts[i]
			}
		}
		return h.At // fake ARI: no core
	}
	for _, h := range hops {
		switch h.Stage {
		case "feed":
			if p, ok := published[h.Src.UnixNano()]; ok {
				deliver = append(deliver, h.At.Sub(p))
			}
		case "written":
			src := h.Src.UnixNano()
			t0, ok := origin[src]
			if !ok {
				t0 = h.Src // not matched to a raise: from the event read
			}
			at := appliedAt(h)
			each = append(each, at.Sub(t0))
			ack = append(ack, h.At.Sub(at))
			writes[src]++
			if h.At.After(lastPut[src]) {
				lastPut[src] = h.At
			}
			if at.After(lastApplied[src]) {
				lastApplied[src] = at
			}
			if f, ok := feed[key{src, h.Server + h.Name}]; ok {
				apply = append(apply, at.Sub(f))
			}
		}
	}
	for src, n := range writes {
		if n < benchServers-1 {
			continue
		}
		t0, ok := origin[src]
		if !ok {
			t0 = time.Unix(0, src)
		}
		e2e = append(e2e, lastApplied[src].Sub(t0))
		e2ePut = append(e2ePut, lastPut[src].Sub(t0))
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
	b.ReportMetric(ms(e2ePut, .5), "p50_put_ms")
	b.ReportMetric(ms(e2ePut, .99), "p99_put_ms")
	b.ReportMetric(ms(each, .5), "p50_each_ms")
	b.ReportMetric(ms(each, .99), "p99_each_ms")
	b.ReportMetric(ms(wire, .5), "hop0_raised_to_event_p50_ms")
	b.ReportMetric(ms(pub, .5), "hop1_event_to_published_p50_ms")
	b.ReportMetric(ms(deliver, .5), "hop2_published_to_feed_p50_ms")
	b.ReportMetric(ms(apply, .5), "hop3_feed_to_applied_p50_ms")
	b.ReportMetric(ms(ack, .5), "hop4_applied_to_put_done_p50_ms")
	b.ReportMetric(ms(wire, .99), "hop0_p99_ms")
	b.ReportMetric(ms(pub, .99), "hop1_p99_ms")
	b.ReportMetric(ms(deliver, .99), "hop2_p99_ms")
	b.ReportMetric(ms(apply, .99), "hop3_p99_ms")
	b.ReportMetric(ms(ack, .99), "hop4_p99_ms")
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
// The clock starts when the bench raises the change on the origin's
// (simulated) Asterisk and stops when both others' simulated cores store
// the Stasis: state (with the fake ARI: when the PUT is done); see report.
// AMI is a fake in every variant (it only gives the start-up snapshot).
func BenchmarkPropagation(b *testing.B) {
	mem := func(*testing.B) (func() Store, int) {
		m := newMemStore()
		return func() Store { return m }, 0
	}
	redis := func(b *testing.B) (func() Store, int) {
		// Production's watch ping (2 s), not the tests' 200 ms: a stall of
		// the shared machine must not resync and reload a benchmark run.
		srv := redistest.Start(b)
		return func() Store {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := redisstore.New(ctx, redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "blf:bench:"}, testLog(b))
			if err != nil {
				b.Fatalf("redisstore: %v", err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		}, srv.Pid()
	}
	b.Run("store=mem/ari=fake", func(b *testing.B) { benchPropagation(b, mem, nil) })
	b.Run("store=redis/ari=fake", func(b *testing.B) { benchPropagation(b, redis, nil) })
	b.Run("store=redis/ari=sim", func(b *testing.B) { benchPropagation(b, redis, dialSim(b)) })
}

// benchPropagation builds one cluster (this parent runs once) and measures
// each rate on it; the rate sub-benchmarks run more than once.
func benchPropagation(b *testing.B, mkStore func(*testing.B) (func() Store, int), dial func(*node)) {
	open, redisPid := mkStore(b)
	nodes, log := benchCluster(b, open, dial)
	seq := 0
	for _, tc := range []struct {
		name string
		rate float64
	}{{"rate=50", 50}, {"rate=5000", 5000}, {"rate=max", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			log.reset()
			b.ResetTimer()
			cpu0, redis0 := measure.CPUSelf(), measure.CPUOf(redisPid)
			start, took, raised := runChanges(b, nodes, log, &seq, b.N, tc.rate)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/took.Seconds(), "changes/s")
			// CPU per change, idle work included: the whole test process
			// (3 monitors, 3 simulated Asterisks, the bench) and Redis.
			b.ReportMetric(float64(measure.CPUSelf()-cpu0)/float64(b.N)/1e3, "cpu_µs/change")
			if redisPid != 0 {
				b.ReportMetric(float64(measure.CPUOf(redisPid)-redis0)/float64(b.N)/1e3, "redis_cpu_µs/change")
			}
			report(b, log, start, raised)
		})
	}
}
