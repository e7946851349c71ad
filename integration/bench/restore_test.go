package bench

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/asterisksupport/doorman/integration/harness"
)

// counter tells how many bans a kernel set holds.
type counter interface{ count() int }

// ipsetCount counts the entries of the ipset backend's IPv4 sets.
type ipsetCount struct{ h *harness.Host }

func (c ipsetCount) count() int {
	n := 0
	for _, s := range []string{"doorman4", "doorman4-perm"} {
		out, err := c.h.Run("ipset", "list", "-t", s)
		if err != nil {
			continue // not created yet
		}
		for line := range strings.Lines(out) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Number of entries:"); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			}
		}
	}
	return n
}

// wipeFirewall removes everything the agent's backend keeps in the kernel,
// as on a freshly booted server.
func (r *rig) wipeFirewall() {
	r.tb.Helper()
	if r.backend == "ipset" {
		for _, t := range []string{"iptables", "ip6tables"} {
			r.dm.MustRun(t, "-t", "raw", "-F", "PREROUTING")
		}
		r.dm.MustRun("ipset", "destroy")
		return
	}
	r.dm.MustRun("nft", "delete", "table", "inet", "doorman")
}

// BenchmarkRestore is case (d) of BenchmarkIntrusionMonitor alone, for
// each firewall backend: 100,000 permanent bans in Redis, an empty kernel,
// the agent started; timed until the kernel holds every ban. It runs once
// whatever b.N is (-benchtime 1x).
//
//	go test ./integration/bench -run '^$' -bench Restore -benchtime 1x
func BenchmarkRestore(b *testing.B) {
	for _, backend := range []string{"nftables", "ipset"} {
		b.Run(backend, func(b *testing.B) {
			harness.RequireRoot(b)
			r := &rig{tb: b, bed: harness.New(b), bin: harness.Binaries(b), backend: backend}
			r.dm = r.bed.AddHost("doorman")
			r.redis = r.bed.AddHost("redis").StartRedis(b)
			r.dmDir = b.TempDir()
			r.startSim(r.dm, r.dmDir)
			r.startAgent(5)
			var w counter = ipsetCount{r.dm}
			if backend == "nftables" {
				s, err := openSet(r.dm, "doorman", "ban4_32")
				if err != nil {
					b.Fatal(err)
				}
				defer s.close()
				w = s
			}
			b.ResetTimer()
			d, total := r.restore(w, netip.MustParseAddr("198.19.0.0"), 100_000)
			b.StopTimer()
			fmt.Printf("    restore %s: %d bans in the set after %.3f s\n", backend, total, d.Seconds())
			b.ReportMetric(d.Seconds(), "restore-100k-s")
		})
	}
}
