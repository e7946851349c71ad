package intrusion

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// TestSweepReleasesLock: a sweep of many bans lets others take the
// monitor's lock between chunks (Handle waits for it on the AMI reader
// goroutine), and still forgets every expired ban and keeps the rest, also
// those set while it runs. Before, it held the lock for the whole walk and
// a waiter only ever saw the bans before or after it.
func TestSweepReleasesLock(t *testing.T) {
	const expired, live = 50 * sweepChunk, 2 * sweepChunk
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, testConfig(), clock, store, store, newFakeFirewall(clock), "pbx-a")
	m := h.m
	now := clock.Now()
	addr := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	m.mu.Lock()
	for i := range expired + live {
		b := state.Ban{Prefix: addr(i), Expires: now.Add(-time.Second)}
		if i >= expired {
			b.Expires = now.Add(time.Hour)
			b.Permanent = i%2 == 0
		}
		m.bans[b.Prefix] = &localBan{ban: b}
	}
	m.mu.Unlock()

	done := make(chan struct{})
	go func() { m.sweep(); close(done) }()
	// Take the lock over and over until the sweep ends, setting a ban each
	// time, and note whether a hold fell inside the sweep.
	midSweep, added := false, 0
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		m.mu.Lock()
		if n := len(m.bans); n > live+added && n < expired+live+added {
			midSweep = true
		}
		b := state.Ban{Prefix: addr(expired + live + added), Expires: now.Add(time.Hour)}
		m.bans[b.Prefix] = &localBan{ban: b}
		added++
		m.mu.Unlock()
		runtime.Gosched()
	}
	if !midSweep {
		t.Error("no one took the lock while the sweep ran")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.bans); n != live+added {
		t.Fatalf("%d bans after the sweep, want %d (%d live, %d set during it)", n, live+added, live, added)
	}
	for p, lb := range m.bans {
		if !lb.ban.Expires.After(now) {
			t.Fatalf("expired ban %v kept", p)
		}
	}
}

// BenchmarkSweep measures one sweep of 100,000 live bans (none expire, as
// between attacks) and the longest a concurrent lock taker (Handle's stand-in)
// waited for the monitor's lock meanwhile.
func BenchmarkSweep(b *testing.B) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(b, testConfig(), clock, store, store, newFakeFirewall(clock), "pbx-a")
	m := h.m
	now := clock.Now()
	m.mu.Lock()
	for i := range 100_000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		m.bans[p] = &localBan{ban: state.Ban{Prefix: p, Expires: now.Add(time.Hour)}}
	}
	m.mu.Unlock()
	stop := make(chan struct{})
	waited := make(chan time.Duration)
	go func() {
		var longest time.Duration
		for {
			select {
			case <-stop:
				waited <- longest
				return
			default:
			}
			t0 := time.Now()
			m.mu.Lock()
			longest = max(longest, time.Since(t0))
			m.mu.Unlock()
			time.Sleep(100 * time.Microsecond) // events a few hundred µs apart, as under attack
		}
	}()
	for b.Loop() {
		m.sweep()
	}
	close(stop)
	b.ReportMetric(float64((<-waited).Microseconds())/1000, "max-wait-ms")
}
