package intrusion

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/ipset"
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/firewall/nft"
	"github.com/asterisksupport/doorman/integration/measure"
)

// BenchmarkRestore times a monitor's start on an empty kernel with 100,000
// permanent bans in a real redis-server, until Ready (which waits for the
// kernel to hold the whole restore), for each backend, and reports the
// process CPU per restore (Redis's own CPU not counted):
//
//	go test ./app/intrusion -run '^$' -bench Restore -benchtime 3x -cpuprofile cpu.out
func BenchmarkRestore(b *testing.B) {
	srv := redistest.Start(b)
	store := openRedis(b, srv.Addr)
	const n = 100_000
	bans := make([]state.Ban, n)
	a := netip.MustParseAddr("198.19.0.0")
	for i := range bans {
		bans[i] = state.Ban{Prefix: netip.PrefixFrom(a, 32), Permanent: true, Reason: "bench", Server: "pbx-b", Strikes: 5, Created: time.Now()}
		a = a.Next()
	}
	if err := store.PutBans(context.Background(), bans); err != nil {
		b.Fatal(err)
	}
	backends := map[string]func(ns *netnstest.NS) (firewall.Firewall, error){
		"nftables": func(ns *netnstest.NS) (firewall.Firewall, error) { return nft.New(nft.Config{NetNS: ns.Path}, nil) },
		"ipset":    func(ns *netnstest.NS) (firewall.Firewall, error) { return ipset.New(ipset.Config{NetNS: ns.Path}, nil) },
	}
	for _, name := range []string{"nftables", "ipset"} {
		b.Run(name, func(b *testing.B) {
			var wall, cpu time.Duration
			b.StopTimer()
			for range b.N {
				ns := netnstest.New(b)
				fw, err := backends[name](ns)
				if err != nil {
					b.Fatal(err)
				}
				cf := &countingFW{Firewall: fw}
				m, err := New(DefaultConfig(), Deps{Store: store, Firewall: cf, Server: "pbx-a"})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				b.StartTimer()
				t0, c0 := time.Now(), measure.CPUSelf()
				go func() { _ = m.Run(ctx); close(done) }()
				for !m.Ready() || cf.added.Load() < n {
					time.Sleep(100 * time.Microsecond)
				}
				wall += time.Since(t0)
				cpu += measure.CPUSelf() - c0
				b.StopTimer()
				// A dump right after a large insert can repeat and miss
				// elements while the kernel resizes its hash table (the
				// nftables library ignores NLM_F_DUMP_INTR): look until
				// one dump shows every ban.
				var got int
				ok := netnstest.WaitFor(10*time.Second, func() bool {
					es, err := fw.List(context.Background())
					uniq := make(map[netip.Prefix]bool, len(es))
					for _, e := range es {
						uniq[e.Prefix] = true
					}
					got = len(uniq)
					return err == nil && got == n
				})
				cancel()
				<-done
				fw.Close()
				if !ok {
					b.Fatalf("kernel holds %d distinct entries, want %d", got, n)
				}
			}
			b.StartTimer()
			b.ReportMetric(wall.Seconds()/float64(b.N), "s/restore")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/restore")
		})
	}
}

// countingFW counts the entries of successful Adds.
type countingFW struct {
	firewall.Firewall
	added atomic.Int64
}

func (c *countingFW) Add(ctx context.Context, es []firewall.Entry) error {
	err := c.Firewall.Add(ctx, es)
	if err == nil {
		c.added.Add(int64(len(es)))
	}
	return err
}
