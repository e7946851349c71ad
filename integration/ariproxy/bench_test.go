package ariproxy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	simari "github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

const (
	benchServers = 3
	benchPhones  = 200 // per server, each on one server only
)

func benchDevice(s, i int) (device, stasis string) {
	ext := fmt.Sprintf("%d%04d", s+1, i)
	return "PJSIP/" + ext, "Stasis:" + ext
}

// latencies records, for each change, when its Stasis: write reached
// each other server (seen as the write's DeviceStateChanged in the
// simulator, in process, so the clock is the same).
type latencies struct {
	mu      sync.Mutex
	pending map[[2]string]pend // (stasis name, state) -> change
	got     []time.Duration
}

type pend struct {
	at   time.Time
	left int
}

func (l *latencies) expect(name, state string, at time.Time, writes int) {
	l.mu.Lock()
	l.pending[[2]string{name, state}] = pend{at, writes}
	l.mu.Unlock()
}

func (l *latencies) seen(e simari.Event) {
	if e.Kind != "DeviceStateChanged" {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{e.Device, e.State}
	p, ok := l.pending[k]
	if !ok {
		return
	}
	l.got = append(l.got, now.Sub(p.at))
	if p.left--; p.left == 0 {
		delete(l.pending, k)
	} else {
		l.pending[k] = p
	}
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// BenchmarkPropagation puts the two transports side by side: 3 servers x
// 200 phones, each with its Busy Lamp Monitor and one real Redis; a
// device state change on one server until the Stasis: write is done on
// the two others (p50/p99 in ms).
//
//	transport=native:    websocket events + HTTP PUTs to each Asterisk
//	transport=ari-proxy: NATS (nats-server) + one ari-proxy per Asterisk
//
// Run with a fixed count, e.g. -bench Propagation -benchtime 600x.
func BenchmarkPropagation(b *testing.B) {
	for _, transport := range []string{native, proxyT} {
		for _, rate := range []float64{100, 0} {
			name := fmt.Sprintf("transport=%s/rate=%v", transport, rate)
			if rate == 0 {
				name = fmt.Sprintf("transport=%s/rate=max", transport)
			}
			b.Run(name, func(b *testing.B) { benchPropagation(b, transport, rate) })
		}
	}
}

func benchPropagation(b *testing.B, transport string, rate float64) {
	c := startCluster(b, transport, benchServers, func(s int) []string {
		exts := make([]string, benchPhones)
		for i := range exts {
			dev, _ := benchDevice(s, i)
			exts[i] = strings.TrimPrefix(dev, "PJSIP/")
		}
		return exts
	}, testBLFConfig())
	lat := &latencies{pending: map[[2]string]pend{}}
	for _, s := range c.servers {
		cancel := s.sim.Backend().Subscribe(lat.seen)
		b.Cleanup(cancel)
	}
	// Settle: every phone known as NOT_INUSE everywhere else.
	for s := range benchServers {
		for i := range benchPhones {
			dev, _ := benchDevice(s, i)
			if err := c.servers[s].sim.SetDeviceState(dev, "NOT_INUSE"); err != nil {
				b.Fatal(err)
			}
		}
	}
	eventually(b, "settled", func() bool {
		for s, srv := range c.servers {
			st := srv.sim.Backend().StasisStates()
			for o := range benchServers {
				if o == s {
					continue
				}
				for i := range benchPhones {
					if _, name := benchDevice(o, i); st[name] != "NOT_INUSE" {
						return false
					}
				}
			}
		}
		return true
	})

	cycle := []string{"RINGING", "INUSE", "NOT_INUSE"}
	repairedBefore := c.repaired()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		s := i % benchServers
		n := (i / benchServers) % benchPhones
		st := cycle[(i/(benchServers*benchPhones))%len(cycle)]
		dev, name := benchDevice(s, n)
		lat.expect(name, st, time.Now(), benchServers-1)
		if err := c.servers[s].sim.SetDeviceState(dev, st); err != nil {
			b.Fatal(err)
		}
	}
	want := b.N * (benchServers - 1)
	deadline := time.Now().Add(2 * time.Minute)
	for lat.count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d writes arrived", lat.count(), want)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	lat.mu.Lock()
	d := slices.Clone(lat.got)
	lat.mu.Unlock()
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1e3 }
	b.ReportMetric(q(.5), "p50_ms")
	b.ReportMetric(q(.99), "p99_ms")
	b.ReportMetric(float64(b.N)/took.Seconds(), "changes/s")
	b.ReportMetric(float64(c.repaired()-repairedBefore), "repaired_events")
}

// repaired sums the changes the ari-proxy clients found only by repair
// (events ari-proxy lost).
func (c *cluster) repaired() (n int64) {
	for _, cl := range c.clients {
		if r, ok := cl.(interface{ Repaired() int64 }); ok {
			n += r.Repaired()
		}
	}
	return n
}
