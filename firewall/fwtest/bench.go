package fwtest

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/integration/measure"
)

// NewB is New for benchmarks.
type NewB func(b *testing.B, ns *netnstest.NS) firewall.Firewall

// Entries returns n distinct bans: nine in ten IPv4 hosts, one in ten IPv6
// /64 prefixes, all with the given timeout. They are set elements only; no
// traffic is ever sent to them.
func Entries(n int, timeout time.Duration) []firewall.Entry {
	es := make([]firewall.Entry, n)
	for i := range es {
		var p netip.Prefix
		if i%10 == 9 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 0, 8: 0})
			p = netip.PrefixFrom(a, 64)
		} else {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)}), 32)
		}
		es[i] = firewall.Entry{Prefix: p, Timeout: timeout}
	}
	return es
}

// BenchRestore measures restoring n permanent bans in one Add call into a
// fresh namespace, as after a reboot or a flushed ruleset.
func BenchRestore(b *testing.B, newFW NewB, n int) { BenchRestorePages(b, newFW, n, n) }

// BenchRestorePages is BenchRestore with the bans added page entries per
// Add, as the Intrusion Monitor restores a store that lists in pages.
func BenchRestorePages(b *testing.B, newFW NewB, n, page int) {
	es := Entries(n, 0)
	ctx := context.Background()
	var total, spent time.Duration
	for b.Loop() {
		b.StopTimer()
		f := newFW(b, netnstest.New(b))
		b.StartTimer()
		start, cpu0 := time.Now(), measure.CPUSelf()
		for p := range slices.Chunk(es, page) {
			if err := f.Add(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(start)
		spent += measure.CPUSelf() - cpu0
		b.StopTimer()
		got, err := f.List(ctx)
		if err != nil || len(got) != n {
			b.Fatalf("List after restore: %d entries, %v", len(got), err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/restore")
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "bans/s")
	b.ReportMetric(spent.Seconds()/float64(b.N), "cpu_s/restore")
}

// BenchAddLatency measures single-ban Add calls (a temporary IPv4 ban each)
// into sets already holding prefill bans, and reports p50/p99 latency and the
// process CPU time (user+system, which includes the kernel's netlink work)
// per 10,000 adds, from getrusage.
func BenchAddLatency(b *testing.B, newFW NewB, prefill int) {
	f := newFW(b, netnstest.New(b))
	ctx := context.Background()
	if err := f.Add(ctx, Entries(prefill, 0)); err != nil {
		b.Fatal(err)
	}
	const adds = 10_000
	es := Entries(prefill+adds, time.Hour)[prefill:]
	var lat []time.Duration
	before := measure.CPUSelf()
	for b.Loop() {
		lat = lat[:0]
		for i := range adds {
			start := time.Now()
			if err := f.Add(ctx, es[i:i+1]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	spent := measure.CPUSelf() - before
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
	b.ReportMetric(ms(spent)/float64(b.N), "cpu_ms/10k_adds")
}
