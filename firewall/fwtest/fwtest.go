// Package fwtest is the conformance suite every firewall.Firewall backend
// runs against the real kernel: entries, timeouts, prefixes, and packets from
// one network namespace really dropped in another, established conntrack
// flows included. Backends add their own tests for what only they own (table
// layout, iptables rules).
package fwtest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/netnstest"
)

// New returns an initialised backend whose kernel state lives in ns, and
// closes it when the test ends.
type New func(t *testing.T, ns *netnstest.NS) firewall.Firewall

// Run runs the suite.
func Run(t *testing.T, newFW New) {
	t.Run("AddListDelete", func(t *testing.T) { AddListDelete(t, newFW(t, netnstest.New(t))) })
	t.Run("TimeoutsAndRefresh", func(t *testing.T) { TimeoutsAndRefresh(t, newFW(t, netnstest.New(t))) })
	t.Run("BigBatchRefresh", func(t *testing.T) { BigBatchRefresh(t, newFW(t, netnstest.New(t))) })
	t.Run("Concurrent", func(t *testing.T) { Concurrent(t, newFW(t, netnstest.New(t))) })
	t.Run("Traffic", func(t *testing.T) { testTraffic(t, newFW) })
}

// P parses a prefix.
func P(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// List returns the listed entries by prefix, failing on duplicates.
func List(t *testing.T, f firewall.Firewall) map[netip.Prefix]time.Duration {
	t.Helper()
	es, err := f.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := map[netip.Prefix]time.Duration{}
	for _, e := range es {
		if _, dup := m[e.Prefix]; dup {
			t.Fatalf("List returned %v twice", e.Prefix)
		}
		m[e.Prefix] = e.Timeout
	}
	return m
}

// AddListDelete checks entries of both families and several prefix
// lengths, duplicates, deleting absent entries and bad input, on an
// initialised and empty backend.
func AddListDelete(t *testing.T, f firewall.Firewall) {
	ctx := context.Background()
	err := f.Add(ctx, []firewall.Entry{
		{Prefix: P("198.51.100.7/32"), Timeout: time.Hour},
		{Prefix: P("198.51.100.8/32")},
		{Prefix: P("2001:db8:1:2:3::9/64"), Timeout: time.Minute}, // host bits are cleared
		{Prefix: P("2001:db8:5::7/128")},
		{Prefix: P("203.0.113.0/24")},
		{Prefix: P("198.51.100.7/32"), Timeout: time.Minute}, // duplicate: the longest ban wins
		{Prefix: P("198.51.100.50/32"), Timeout: 10 * 365 * 24 * time.Hour},
	})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	m := List(t, f)
	want := map[string]func(time.Duration) bool{
		"198.51.100.7/32":   func(d time.Duration) bool { return d > 59*time.Minute && d <= time.Hour },
		"198.51.100.8/32":   func(d time.Duration) bool { return d == 0 },
		"2001:db8:1:2::/64": func(d time.Duration) bool { return d > 50*time.Second && d <= time.Minute },
		"2001:db8:5::7/128": func(d time.Duration) bool { return d == 0 },
		"203.0.113.0/24":    func(d time.Duration) bool { return d == 0 },
		// ipset caps timeouts at 2,147,483 s (24.8 days).
		"198.51.100.50/32": func(d time.Duration) bool { return d > 24*24*time.Hour },
	}
	if len(m) != len(want) {
		t.Fatalf("List = %v, want %d entries", m, len(want))
	}
	for p, ok := range want {
		if d, found := m[P(p)]; !found || !ok(d) {
			t.Errorf("List[%s] = %v (found %v)", p, d, found)
		}
	}
	// Present and absent entries, of lengths in use and not.
	err = f.Delete(ctx, []netip.Prefix{P("198.51.100.7/32"), P("198.51.100.99/32"), P("198.51.100.50/32"),
		P("2001:db8:1:2::/64"), P("2001:db8::/48"), P("203.0.113.0/24"), P("2001:db8:5::7/128")})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if m := List(t, f); len(m) != 1 || m[P("198.51.100.8/32")] != 0 {
		t.Fatalf("after Delete: %v", m)
	}
	if err := f.Delete(ctx, []netip.Prefix{P("198.51.100.7/32")}); err != nil {
		t.Fatalf("Delete of an absent entry: %v", err)
	}
	if err := f.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := f.Delete(ctx, nil); err != nil {
		t.Fatalf("Delete(nil): %v", err)
	}
	if err := f.Add(ctx, nil); err != nil {
		t.Fatalf("Add(nil): %v", err)
	}
	for _, e := range []firewall.Entry{{}, {Prefix: P("0.0.0.0/0")}, {Prefix: P("192.0.2.1/32"), Timeout: -time.Second}} {
		if err := f.Add(ctx, []firewall.Entry{e}); err == nil {
			t.Errorf("Add(%+v) accepted bad input", e)
		}
	}
}

// TimeoutsAndRefresh checks that re-adding refreshes timeouts (longer,
// shorter, to and from permanent), that short bans disappear and permanent
// ones stay, on an initialised and empty backend.
func TimeoutsAndRefresh(t *testing.T, f firewall.Firewall) {
	ctx := context.Background()
	short, perm, six := P("198.51.100.1/32"), P("198.51.100.2/32"), P("2001:db8:9::/64")
	add := func(es ...firewall.Entry) {
		t.Helper()
		if err := f.Add(ctx, es); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	add(firewall.Entry{Prefix: short, Timeout: 10 * time.Second}, firewall.Entry{Prefix: perm, Timeout: time.Second},
		firewall.Entry{Prefix: six, Timeout: time.Second})
	// Re-adding refreshes: longer timeout, temporary to permanent.
	add(firewall.Entry{Prefix: short, Timeout: time.Hour}, firewall.Entry{Prefix: perm}, firewall.Entry{Prefix: six, Timeout: time.Hour})
	if m := List(t, f); m[short] < 59*time.Minute || m[perm] != 0 || m[six] < 59*time.Minute {
		t.Fatalf("after refresh: %v", m)
	}
	// And back to a short timeout: then it disappears, the permanent one stays.
	add(firewall.Entry{Prefix: short, Timeout: 2 * time.Second}, firewall.Entry{Prefix: six, Timeout: 2 * time.Second})
	if d := List(t, f)[short]; d <= 0 || d > 2*time.Second {
		t.Fatalf("after refresh to 2s: %v left", d)
	}
	netnstest.Eventually(t, 15*time.Second, func() bool {
		m := List(t, f)
		_, a := m[short]
		_, b := m[six]
		return !a && !b
	}, "%v and %v still listed", short, six)
	if d, ok := List(t, f)[perm]; !ok || d != 0 {
		t.Fatalf("permanent entry: %v %v", d, ok)
	}
}

// BigBatchRefresh checks the paths backends may take for large batches:
// re-adding 1,500 present entries as permanent plus 500 new temporary ones.
func BigBatchRefresh(t *testing.T, f firewall.Firewall) {
	ctx := context.Background()
	es := Entries(2000, time.Hour)
	if err := f.Add(ctx, es[:1500]); err != nil {
		t.Fatalf("Add: %v", err)
	}
	again := append(Entries(1500, 0), es[1500:]...)
	if err := f.Add(ctx, again); err != nil {
		t.Fatalf("re-Add: %v", err)
	}
	m := List(t, f)
	if len(m) != 2000 {
		t.Fatalf("List: %d entries, want 2000", len(m))
	}
	for i, e := range es {
		d, ok := m[e.Prefix]
		if !ok || (i < 1500) != (d == 0) {
			t.Fatalf("entry %d %v: timeout %v, listed %v", i, e.Prefix, d, ok)
		}
	}
	if err := f.Delete(ctx, Prefixes(es)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if m := List(t, f); len(m) != 0 {
		t.Fatalf("after Delete: %d entries", len(m))
	}
}

// Concurrent runs Adds, Lists, Checks and Deletes from several goroutines.
func Concurrent(t *testing.T, f firewall.Firewall) {
	ctx := context.Background()
	es := Entries(400, time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(es); i += 4 {
				if err := f.Add(ctx, es[i:i+1]); err != nil {
					errs <- err
					return
				}
				if i%40 == g {
					if _, err := f.List(ctx); err != nil {
						errs <- err
						return
					}
					if err := f.Check(ctx); err != nil {
						errs <- err
						return
					}
				}
				if i%2 == 1 {
					if err := f.Delete(ctx, []netip.Prefix{es[i].Prefix}); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := List(t, f); len(m) != 200 {
		t.Fatalf("List: %d entries, want 200", len(m))
	}
}

// Prefixes returns the entries' prefixes.
func Prefixes(es []firewall.Entry) []netip.Prefix {
	ps := make([]netip.Prefix, len(es))
	for i, e := range es {
		ps[i] = e.Prefix
	}
	return ps
}

// otherTable is someone else's ruleset in the server namespace: it must stay
// untouched, and its counter shows conntrack saw an established flow.
const otherTable = `table inet other {
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established counter accept
	}
}`

var establishedRE = regexp.MustCompile(`ct state established counter packets (\d+)`)

func established(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	out := ns.MustRun(t, "nft", "list", "table", "inet", "other")
	m := establishedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("other table changed:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// ctPackets returns the original-direction packet count of the UDP flow
// from src to port in ns's conntrack table (nf_conntrack_acct must be on).
func ctPackets(t *testing.T, ns *netnstest.NS, src netip.Addr, port int) int {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/nf_conntrack")
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, " udp ") || !strings.Contains(line, "src="+src.String()+" ") ||
			!strings.Contains(line, "dport="+strconv.Itoa(port)+" ") {
			continue
		}
		if m := packetsRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("no conntrack entry for %v -> :%d in:\n%s", src, port, out)
	return 0
}

var packetsRE = regexp.MustCompile(`packets=(\d+)`)

func testTraffic(t *testing.T, newFW New) {
	p := netnstest.NewPair(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "other.nft")
	if err := os.WriteFile(file, []byte(otherTable), 0o600); err != nil {
		t.Fatal(err)
	}
	p.B.MustRun(t, "nft", "-f", file)
	p.B.MustRun(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
	f := newFW(t, p.B)
	const wait = 300 * time.Millisecond
	add := func(e firewall.Entry) {
		t.Helper()
		if err := f.Add(ctx, []firewall.Entry{e}); err != nil {
			t.Fatalf("Add %v: %v", e, err)
		}
	}
	del := func(pf netip.Prefix) {
		t.Helper()
		if err := f.Delete(ctx, []netip.Prefix{pf}); err != nil {
			t.Fatalf("Delete %v: %v", pf, err)
		}
	}

	v4 := netnstest.NewProbe(t, p.A, p.A4, p.B, netip.AddrPortFrom(p.B4, 5060))
	v4b := netnstest.NewProbe(t, p.A, p.A4b, p.B, netip.AddrPortFrom(p.B4, 5061))
	v6 := netnstest.NewProbe(t, p.A, p.A6, p.B, netip.AddrPortFrom(p.B6, 5060))
	v6b := netnstest.NewProbe(t, p.A, p.A6b, p.B, netip.AddrPortFrom(p.B6, 5061))

	// An established flow before the ban: two exchanges, the second is
	// counted as established by the other table's conntrack rule.
	for _, pr := range []*netnstest.Probe{v4, v4, v6, v6} {
		if !pr.Reaches(t, 2*time.Second) {
			t.Fatalf("probe from %v lost before any ban", pr.From.LocalAddr())
		}
	}
	est := established(t, p.B)
	if est == 0 {
		t.Fatal("no established conntrack flow before the ban")
	}
	flow := ctPackets(t, p.B, p.A4, 5060)

	t.Run("host ban drops an established flow", func(t *testing.T) {
		add(firewall.Entry{Prefix: netip.PrefixFrom(p.A4, 32)})
		if v4.Reaches(t, wait) {
			t.Fatal("banned IPv4 source reached the listener")
		}
		if got := established(t, p.B); got != est {
			t.Fatalf("banned packet reached conntrack's established rule (%d -> %d)", est, got)
		}
		if got := ctPackets(t, p.B, p.A4, 5060); got != flow {
			t.Fatalf("banned packet reached conntrack (flow packets %d -> %d): not dropped before conntrack", flow, got)
		}
		if !v4b.Reaches(t, 2*time.Second) {
			t.Fatal("an unbanned address of the same host was dropped")
		}
		del(netip.PrefixFrom(p.A4, 32))
		netnstest.Eventually(t, 5*time.Second, func() bool { return v4.Reaches(t, wait) }, "unbanned source still dropped")
	})

	t.Run("IPv6 /64 ban covers the prefix", func(t *testing.T) {
		add(firewall.Entry{Prefix: netip.PrefixFrom(p.A6, 64)})
		if v6.Reaches(t, wait) || v6b.Reaches(t, wait) {
			t.Fatal("a source in the banned /64 reached the listener")
		}
		if !v4.Reaches(t, 2*time.Second) {
			t.Fatal("an IPv4 source was dropped by an IPv6 ban")
		}
		del(netip.PrefixFrom(p.A6, 64))
		netnstest.Eventually(t, 5*time.Second, func() bool { return v6b.Reaches(t, wait) }, "unbanned /64 still dropped")
	})

	t.Run("IPv4 prefix and /128 bans", func(t *testing.T) {
		add(firewall.Entry{Prefix: P("192.0.2.0/28"), Timeout: time.Minute})
		add(firewall.Entry{Prefix: netip.PrefixFrom(p.A6b, 128), Timeout: time.Minute})
		if v4.Reaches(t, wait) || v4b.Reaches(t, wait) || v6b.Reaches(t, wait) {
			t.Fatal("a source in a banned prefix reached the listener")
		}
		if !v6.Reaches(t, 2*time.Second) {
			t.Fatal("an address outside the /128 ban was dropped")
		}
		del(P("192.0.2.0/28"))
		del(netip.PrefixFrom(p.A6b, 128))
	})

	t.Run("temporary ban lapses", func(t *testing.T) {
		add(firewall.Entry{Prefix: netip.PrefixFrom(p.A4, 32), Timeout: 2 * time.Second})
		if v4.Reaches(t, wait) {
			t.Fatal("banned source reached the listener")
		}
		netnstest.Eventually(t, 15*time.Second, func() bool { return v4.Reaches(t, wait) }, "source still dropped after its ban expired")
	})

	if got := established(t, p.B); got <= est {
		t.Fatalf("the other table's rule stopped counting (%d -> %d)", est, got)
	}
}
