package intrusion

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/integration/measure"
)

// attackEvents returns n failed attempts as Asterisk 22 raises them for an
// unknown PJSIP account: InvalidAccountID, ChallengeSent, InvalidAccountID,
// ChallengeResponseFailed, sharing Call-ID and source (4 events, 1
// attempt). Every attempt comes from its own address, so each one is a ban.
func attackEvents(n int) []ami.SecurityEvent {
	out := make([]ami.SecurityEvent, 0, 4*n)
	for i := range n {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(64 + i>>16&63), byte(i >> 8), byte(i)}), 5060)
		callID := strconv.Itoa(i) + "@attacker"
		for _, typ := range []string{"InvalidAccountID", "ChallengeSent", "InvalidAccountID", "ChallengeResponseFailed"} {
			out = append(out, ami.SecurityEvent{Type: typ, Service: "PJSIP", AccountID: "9999", SessionID: callID,
				Transport: "UDP", Remote: src, Severity: "Error"})
		}
	}
	return out
}

type benchRun struct {
	m       *Monitor
	fw      *fakeFirewall
	mu      sync.Mutex
	lat     []time.Duration
	cancel  context.CancelFunc
	stopped chan struct{}
}

func startBench(b *testing.B, batch bool) *benchRun {
	b.Helper()
	clock := realClock{}
	fs := newFakeStore(clock)
	fw := newFakeFirewall(clock)
	var store state.Bans = fs
	if batch {
		store = fakeBatchStore{fs}
	}
	m, err := New(DefaultConfig(), Deps{Store: store, Firewall: fw, Server: "pbx-a"})
	if err != nil {
		b.Fatal(err)
	}
	r := &benchRun{m: m, fw: fw, stopped: make(chan struct{})}
	m.onApplied = func(d time.Duration) {
		r.mu.Lock()
		r.lat = append(r.lat, d)
		r.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { _ = m.Run(ctx); close(r.stopped) }()
	waitFor(b, "ready", m.Ready)
	return r
}

func (r *benchRun) stop() { r.cancel(); <-r.stopped }

func (r *benchRun) report(b *testing.B, events, attempts int, wall, cpu time.Duration) {
	r.mu.Lock()
	lat := slices.Clone(r.lat)
	r.mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
	b.ReportMetric(cpu.Seconds()/float64(attempts)*10_000, "cpu-s/10k-attempts")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// waitApplied waits until every attempt is banned in the fake firewall.
func (r *benchRun) waitApplied(b *testing.B, n int) {
	deadline := time.Now().Add(time.Minute)
	for r.fw.count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d bans applied", r.fw.count(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkHandle feeds attack events as fast as Handle takes them and
// waits until every ban is in the (fake) firewall. It reports throughput,
// CPU per 10,000 failed attempts (getrusage: every goroutine of the
// process, including the fake store and its feed) and ban latency.
func BenchmarkHandle(b *testing.B) {
	for _, batch := range []bool{false, true} {
		name := "store=plain"
		if batch {
			name = "store=batch"
		}
		b.Run(name, func(b *testing.B) {
			attempts := max(b.N/4, 1)
			all := attackEvents(2 * attempts)
			warm, evs := all[:len(all)/2], all[len(all)/2:]
			r := startBench(b, batch)
			defer r.stop()
			// Warm up with as many other attackers, so maps have grown as
			// in an agent that has been running for a while.
			for _, ev := range warm {
				r.m.Handle(ev)
			}
			r.waitApplied(b, attempts)
			r.mu.Lock()
			r.lat = r.lat[:0]
			r.mu.Unlock()
			attempts *= 2 // waitApplied counts the warm-up's bans too
			b.ResetTimer()
			cpu0, t0 := measure.CPUSelf(), time.Now()
			for _, ev := range evs {
				r.m.Handle(ev)
			}
			r.waitApplied(b, attempts)
			wall, cpu := time.Since(t0), measure.CPUSelf()-cpu0
			b.StopTimer()
			r.report(b, len(evs), attempts/2, wall, cpu)
		})
	}
}

// BenchmarkHandlePaced feeds 50,000 events per second (12,500 attempts,
// each a new ban) in 1 ms ticks, the target load, and reports ban latency
// from the triggering event to the firewall Add returning. With
// handle=batch each tick is one HandleBatch, as the agent calls it per AMI
// read; with handle=event, one Handle per event.
func BenchmarkHandlePaced(b *testing.B) {
	for _, batch := range []bool{false, true} {
		name := "handle=event"
		if batch {
			name = "handle=batch"
		}
		b.Run(name, func(b *testing.B) {
			const perTick = 50 // events per millisecond
			attempts := max(b.N/4, perTick)
			evs := attackEvents(attempts)
			r := startBench(b, true)
			defer r.stop()
			b.ResetTimer()
			cpu0, t0 := measure.CPUSelf(), time.Now()
			for i := 0; i < len(evs); i += perTick {
				feed(r.m, evs[i:min(i+perTick, len(evs))], batch)
				next := t0.Add(time.Duration(i/perTick+1) * time.Millisecond)
				time.Sleep(time.Until(next))
			}
			r.waitApplied(b, attempts)
			wall, cpu := time.Since(t0), measure.CPUSelf()-cpu0
			b.StopTimer()
			r.report(b, len(evs), attempts, wall, cpu)
		})
	}
}

// feed hands one tick's events to m: in one HandleBatch, or one Handle each.
func feed(m *Monitor, evs []ami.SecurityEvent, batch bool) {
	if batch {
		m.HandleBatch(evs)
		return
	}
	for _, ev := range evs {
		m.Handle(ev)
	}
}
