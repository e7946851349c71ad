package nft_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/fwtest"
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/integration/measure"
)

// BenchmarkAddFlood adds batches of 1,000 fresh temporary bans (a flood of
// new attackers) to sets already holding 100,000: Add must not read the
// whole set for each batch. Reports latency per batch and process CPU (user
// and system, so the kernel's netlink work too) per 10,000 bans.
func BenchmarkAddFlood(b *testing.B) {
	const prefill, batch = 100_000, 1_000
	f := newFirewall(b, netnstest.New(b))
	ctx := context.Background()
	if err := f.Add(ctx, fwtest.Entries(prefill, 0)); err != nil {
		b.Fatal(err)
	}
	all := fwtest.Entries(prefill+50*batch, time.Hour)[prefill:]
	var lat []time.Duration
	var spent time.Duration
	added := 0
	i := 0
	for b.Loop() {
		if i+batch > len(all) {
			i = 0 // re-adding refreshes: still one batch of work
		}
		start, cpu0 := time.Now(), measure.CPUSelf()
		if err := f.Add(ctx, all[i:i+batch]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		spent += measure.CPUSelf() - cpu0
		added += batch
		i += batch
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms/batch")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms/batch")
	b.ReportMetric(spent.Seconds()/float64(added)*10_000, "cpu_s/10k_bans")
	b.ReportMetric(0, "ns/op")
}

// TestLargeAddsWithoutRead checks the large-add path both ways: fresh
// large batches into a big set (written without reading it), re-adds that
// change timeouts, and a restore into an emptied set (read first).
func TestLargeAddsWithoutRead(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	es := fwtest.Entries(3000, 0)
	if err := f.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	fresh := fwtest.Entries(4000, time.Hour)[3000:]
	if err := f.Add(ctx, fresh); err != nil { // 3,000 in the set, 1,000 new: no read
		t.Fatal(err)
	}
	// 500 permanent bans become temporary, 500 temporary ones permanent.
	change := append(fwtest.Entries(500, time.Minute), fwtest.Entries(4000, 0)[3000:3500]...)
	if err := f.Add(ctx, change); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]time.Duration{}
	for _, e := range slices.Concat(es, fresh, change) {
		want[e.Prefix] = e.Timeout
	}
	checkSet(t, f, want)

	// A second backend (its sets' sizes unknown, so it reads them) changes
	// 600 timeouts back.
	back := fwtest.Entries(600, 0)
	if err := newFirewall(t, ns).Add(ctx, back); err != nil {
		t.Fatal(err)
	}
	for _, e := range back {
		want[e.Prefix] = 0
	}
	checkSet(t, f, want)

	// Everything gone behind our back (the bound is now far too high):
	// a large add still lands, whichever way it is written.
	all := make([]netip.Prefix, 0, len(want))
	for p := range want {
		all = append(all, p)
	}
	if err := f.Delete(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(ctx, es[:1000]); err != nil {
		t.Fatal(err)
	}
	want = map[netip.Prefix]time.Duration{}
	for _, e := range es[:1000] {
		want[e.Prefix] = 0
	}
	checkSet(t, f, want)

	// After a flush, Init recreates the sets empty and a restore lands.
	ns.MustRun(t, "nft", "flush", "ruleset")
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	want = map[netip.Prefix]time.Duration{}
	for _, e := range es {
		want[e.Prefix] = 0
	}
	checkSet(t, f, want)
}

func checkSet(t *testing.T, f firewall.Firewall, want map[netip.Prefix]time.Duration) {
	t.Helper()
	got, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("set holds %d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		to, ok := want[e.Prefix]
		if !ok {
			t.Fatalf("unexpected entry %v", e.Prefix)
		}
		if (to == 0) != (e.Timeout == 0) || e.Timeout > to {
			t.Fatalf("entry %v has timeout %v, want %v", e.Prefix, e.Timeout, to)
		}
	}
}

// TestRestoreInPages adds a restore a page at a time into sets Init just
// created, as the Intrusion Monitor does, then turns one page's bans
// temporary and a page of temporary ones permanent: every page lands, and
// re-added keys get their new timeouts.
func TestRestoreInPages(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	es := fwtest.Entries(6000, 0)
	want := map[netip.Prefix]time.Duration{}
	for page := range slices.Chunk(es, 500) {
		if err := f.Add(ctx, page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			want[e.Prefix] = e.Timeout
		}
	}
	checkSet(t, f, want)
	change := slices.Concat(fwtest.Entries(500, time.Hour), fwtest.Entries(6500, time.Hour)[6000:])
	if err := f.Add(ctx, change); err != nil {
		t.Fatal(err)
	}
	back := fwtest.Entries(6500, 0)[6000:]
	if err := f.Add(ctx, back); err != nil {
		t.Fatal(err)
	}
	for _, e := range slices.Concat(change, back) {
		want[e.Prefix] = e.Timeout
	}
	checkSet(t, f, want)
}
