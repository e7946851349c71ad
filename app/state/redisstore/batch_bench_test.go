package redisstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/integration/measure"
)

// BenchmarkBanFlood writes what a flood of new attackers makes an agent
// write (per ban: one PutBan and one escalation Incr) while a WatchBans
// of the same process takes every ban back from the feed, one item at a
// time or in batches of the given size (a batch of 12 is 1 ms of 12,500
// bans/s). Reports this process's CPU per 10,000 bans (redis-server's is
// not counted) and bans/s.
func BenchmarkBanFlood(b *testing.B) {
	for _, batch := range []int{1, 12, 128} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			srv := redistest.Start(b)
			s := benchStore(b, srv)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			feed, err := s.WatchBans(ctx)
			if err != nil {
				b.Fatal(err)
			}
			const n = 10_000
			exp := time.Now().Add(time.Hour)
			bans := make([]state.Ban, n)
			keys := make([]string, n)
			windows := make([]time.Duration, n)
			for i := range bans {
				a := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
				bans[i] = state.Ban{Prefix: netip.PrefixFrom(a, 32), Expires: exp, Server: "pbx-a",
					Reason: "3 failed attempts in 1m0s", Strikes: 3, Created: time.Now()}
				keys[i] = "e:" + bans[i].Prefix.String()
				windows[i] = time.Hour
			}
			var spent, wall time.Duration
			for b.Loop() {
				cpu0, t0 := measure.CPUSelf(), time.Now()
				for i := 0; i < n; i += batch {
					j := min(i+batch, n)
					if batch == 1 {
						if _, err := s.Incr(ctx, keys[i], windows[i]); err != nil {
							b.Fatal(err)
						}
						err = s.PutBan(ctx, bans[i])
					} else {
						if _, err := s.IncrMany(ctx, keys[i:j], windows[i:j]); err != nil {
							b.Fatal(err)
						}
						err = s.PutBans(ctx, bans[i:j])
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				for range n {
					select {
					case <-feed:
					case <-time.After(10 * time.Second):
						b.Fatal("feed stalled")
					}
				}
				spent += measure.CPUSelf() - cpu0
				wall += time.Since(t0)
			}
			b.ReportMetric(spent.Seconds()/float64(b.N), "cpu-s/10k-bans")
			b.ReportMetric(float64(n*b.N)/wall.Seconds(), "bans/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
