package ipset_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/fwtest"
	"github.com/asterisksupport/doorman/firewall/ipset"
	"github.com/asterisksupport/doorman/firewall/netnstest"
)

func requireTools(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t, "ipset and iptables in a network namespace")
	for _, tool := range []string{"ipset", "iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func newFirewall(t testing.TB, ns *netnstest.NS) *ipset.Firewall {
	t.Helper()
	requireTools(t)
	f, err := ipset.New(ipset.Config{NetNS: ns.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

var allSets = []string{"doorman4", "doorman4-perm", "doorman6", "doorman6-perm"}

func TestConformance(t *testing.T) {
	fwtest.Run(t, func(t *testing.T, ns *netnstest.NS) firewall.Firewall { return newFirewall(t, ns) })
}

// rules returns the raw PREROUTING rules of iptables and ip6tables.
func rules(t *testing.T, ns *netnstest.NS) (v4, v6 []string) {
	t.Helper()
	for _, c := range []struct {
		cmd string
		out *[]string
	}{{"iptables", &v4}, {"ip6tables", &v6}} {
		for _, l := range strings.Split(ns.MustRun(t, c.cmd, "-w", "-t", "raw", "-S", "PREROUTING"), "\n") {
			if strings.HasPrefix(l, "-A ") {
				*c.out = append(*c.out, l)
			}
		}
	}
	return v4, v6
}

func checkStructure(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	for _, s := range allSets {
		hdr := ns.MustRun(t, "ipset", "list", s, "-t")
		for _, want := range []string{"Type: hash:net", "maxelem 1000000"} {
			if !strings.Contains(hdr, want) {
				t.Errorf("set %s lacks %q:\n%s", s, want, hdr)
			}
		}
		if perm := strings.HasSuffix(s, "-perm"); perm == strings.Contains(hdr, "timeout") {
			t.Errorf("set %s: timeout support wrong (perm=%v):\n%s", s, perm, hdr)
		}
		if strings.HasPrefix(s, "doorman6") != strings.Contains(hdr, "family inet6") {
			t.Errorf("set %s: wrong family:\n%s", s, hdr)
		}
	}
	v4, v6 := rules(t, ns)
	for _, c := range []struct {
		rules []string
		sets  []string
	}{{v4, allSets[:2]}, {v6, allSets[2:]}} {
		n := 0
		for _, r := range c.rules {
			for _, s := range c.sets {
				if r == "-A PREROUTING -m set --match-set "+s+` src -m comment --comment doorman -j DROP` {
					n++
				}
			}
		}
		if n != len(c.sets) {
			t.Errorf("want one DROP rule per set %v, got rules %q", c.sets, c.rules)
		}
	}
}

func TestInitCreatesStructureIdempotently(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	checkStructure(t, ns)
	if err := f.Init(context.Background()); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	checkStructure(t, ns)
	if err := f.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestCheckDetectsFlushAndInitRepairs(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	// Someone else's set and rules must survive what doorman does.
	ns.MustRun(t, "ipset", "create", "other", "hash:ip")
	ns.MustRun(t, "iptables", "-w", "-A", "INPUT", "-m", "set", "--match-set", "other", "src", "-j", "ACCEPT")
	for _, c := range []struct{ name, script string }{
		{"one rule deleted", "iptables -w -t raw -D PREROUTING -m set --match-set doorman4-perm src -m comment --comment doorman -j DROP"},
		{"ip6tables raw flushed", "ip6tables -w -t raw -F"},
		{"raw flushed and sets destroyed", "iptables -w -t raw -F && ip6tables -w -t raw -F && " +
			"for s in " + strings.Join(allSets, " ") + "; do ipset destroy $s; done"},
		{"one set destroyed", "iptables -w -t raw -F && ip6tables -w -t raw -F && ipset destroy doorman6"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := f.Add(ctx, []firewall.Entry{{Prefix: fwtest.P("198.51.100.1/32")}}); err != nil {
				t.Fatal(err)
			}
			ns.MustRun(t, "sh", "-c", c.script)
			if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
				t.Fatalf("Check = %v, want ErrMissing", err)
			}
			if err := f.Delete(ctx, []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8::/64")}); err != nil {
				t.Fatalf("Delete with parts missing: %v", err)
			}
			if err := f.Init(ctx); err != nil {
				t.Fatalf("Init: %v", err)
			}
			if err := f.Check(ctx); err != nil {
				t.Fatalf("Check after repair: %v", err)
			}
			checkStructure(t, ns)
		})
	}
	if out := ns.MustRun(t, "iptables", "-w", "-S", "INPUT"); !strings.Contains(out, "--match-set other src -j ACCEPT") {
		t.Fatalf("other rule gone: %s", out)
	}
	ns.MustRun(t, "ipset", "list", "other", "-t")
}

func TestTeardown(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	ns.MustRun(t, "ipset", "create", "other", "hash:ip")
	ns.MustRun(t, "iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "other", "src", "-j", "ACCEPT")
	if err := f.Add(ctx, []firewall.Entry{{Prefix: fwtest.P("198.51.100.1/32")}, {Prefix: fwtest.P("2001:db8::/64"), Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second Teardown finds nothing and succeeds
		if err := f.Teardown(ctx); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
	}
	if out := ns.MustRun(t, "ipset", "list", "-n"); strings.TrimSpace(out) != "other" {
		t.Fatalf("sets after Teardown: %q", out)
	}
	v4, v6 := rules(t, ns)
	if len(v4) != 1 || !strings.Contains(v4[0], "other") || len(v6) != 0 {
		t.Fatalf("rules after Teardown: %q %q", v4, v6)
	}
	if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Check after Teardown = %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []ipset.Config{{Set4: "bad name"}, {Set4: "x", Set6: "x"}, {Set4: "a", Set6: "a-perm"},
		{BatchSize: 5000}, {Nadoo: true, NetNS: "/run/netns/x"}, {NetNS: "/nonexistent/ns"}} {
		if f, err := ipset.New(c, nil); err == nil || !strings.HasPrefix(err.Error(), "ipset: ") {
			t.Errorf("New(%+v) = %v, want an ipset: error", c, err)
			if f != nil {
				f.Close()
			}
		}
	}
}

func TestFullSetIsAnError(t *testing.T) {
	ns := netnstest.New(t)
	requireTools(t)
	f, err := ipset.New(ipset.Config{NetNS: ns.Path, MaxElem: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var es []firewall.Entry
	for i := range 10 {
		es = append(es, firewall.Entry{Prefix: fwtest.P("198.51.100." + string(rune('0'+i)) + "/32")})
	}
	if err := f.Add(ctx, es); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Add beyond maxelem = %v, want a 'set is full' error", err)
	}
	// Sets of the same name but other options are reported, not replaced.
	g, err := ipset.New(ipset.Config{NetNS: ns.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Init(ctx); err == nil || !strings.Contains(err.Error(), "doorman4") {
		t.Fatalf("Init over sets with another maxelem = %v, want an error naming the set", err)
	}
}

// The nadoo writer works only in the process's own namespace, so this test
// re-runs the test binary inside a fresh namespace (`ip netns exec`), where
// TestNadooChild does the work.
func TestNadooWriter(t *testing.T) {
	ns := netnstest.New(t)
	requireTools(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, exe, "-test.run=^TestNadooChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "DOORMAN_NADOO_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNadooChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestNadooChild(t *testing.T) {
	if os.Getenv("DOORMAN_NADOO_CHILD") != "1" {
		t.Skip("run by TestNadooWriter inside its own namespace")
	}
	f, err := ipset.New(ipset.Config{Nadoo: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	fwtest.AddListDelete(t, f)
	if err := f.Delete(ctx, []netip.Prefix{fwtest.P("198.51.100.8/32")}); err != nil {
		t.Fatal(err)
	}
	fwtest.TimeoutsAndRefresh(t, f)
	// A write to a destroyed set is an error, though nadoo itself is silent.
	exec.Command("iptables", "-w", "-t", "raw", "-F").Run()
	exec.Command("ip6tables", "-w", "-t", "raw", "-F").Run()
	if out, err := exec.Command("ipset", "destroy").CombinedOutput(); err != nil {
		t.Fatalf("ipset destroy: %v %s", err, out)
	}
	if err := f.Add(ctx, []firewall.Entry{{Prefix: fwtest.P("198.51.100.1/32"), Timeout: time.Minute}}); err == nil {
		t.Fatal("nadoo add to a missing set reported success")
	}
}

func newFW(b *testing.B, ns *netnstest.NS) firewall.Firewall { return newFirewall(b, ns) }

func BenchmarkRestore100k(b *testing.B) { fwtest.BenchRestore(b, newFW, 100_000) }

// BenchmarkRestore100kPages adds the 100,000 bans in the pages of 4,000
// that the Intrusion Monitor gets from Redis.
func BenchmarkRestore100kPages(b *testing.B) { fwtest.BenchRestorePages(b, newFW, 100_000, 4000) }

func BenchmarkAddLatency(b *testing.B) { fwtest.BenchAddLatency(b, newFW, 10_000) }

// TestRestoreInPages adds bans a page at a time, as the Intrusion Monitor
// restores them, moving pages between the permanent and the timeout sets:
// each ban ends in exactly one set, with its kind.
func TestRestoreInPages(t *testing.T) {
	requireTools(t)
	f := newFirewall(t, netnstest.New(t))
	ctx := context.Background()
	want := map[netip.Prefix]bool{} // permanent?
	add := func(es []firewall.Entry) {
		t.Helper()
		for page := range slices.Chunk(es, 400) {
			if err := f.Add(ctx, page); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range es {
			want[e.Prefix] = e.Timeout == 0
		}
	}
	add(fwtest.Entries(3000, 0))
	add(fwtest.Entries(1200, time.Hour)) // permanent -> timeout set
	add(fwtest.Entries(800, 0))          // and back
	got, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]bool{}
	for _, e := range got {
		if seen[e.Prefix] {
			t.Fatalf("%v listed twice (in both sets)", e.Prefix)
		}
		seen[e.Prefix] = true
		if perm, ok := want[e.Prefix]; !ok || perm != e.Permanent() {
			t.Fatalf("%v: permanent %v, want %v (known %v)", e.Prefix, e.Permanent(), perm, ok)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d bans listed, want %d", len(seen), len(want))
	}
}
