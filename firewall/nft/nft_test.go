package nft_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/fwtest"
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/firewall/nft"
)

func newFirewall(t testing.TB, ns *netnstest.NS) *nft.Firewall {
	t.Helper()
	f, err := nft.New(nft.Config{NetNS: ns.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// listMap returns the listed entries by prefix.
func listMap(t *testing.T, f firewall.Firewall) map[netip.Prefix]time.Duration {
	t.Helper()
	es, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
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

// nftJSON returns the object kinds and names of `nft -j list table inet doorman`.
func nftObjects(t *testing.T, ns *netnstest.NS) (sets, chains []string, rules int) {
	t.Helper()
	out := ns.MustRun(t, "nft", "-j", "list", "table", "inet", "doorman")
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v: %s", err, out)
	}
	for _, o := range doc.Nftables {
		var obj struct {
			Name  string   `json:"name"`
			Hook  string   `json:"hook"`
			Prio  int      `json:"prio"`
			Flags []string `json:"flags"`
		}
		switch {
		case o["set"] != nil:
			json.Unmarshal(o["set"], &obj)
			if !slices.Contains(obj.Flags, "timeout") {
				t.Errorf("set %s lacks flags timeout: %s", obj.Name, o["set"])
			}
			sets = append(sets, obj.Name)
		case o["chain"] != nil:
			json.Unmarshal(o["chain"], &obj)
			if obj.Hook != "prerouting" || obj.Prio != -300 {
				t.Errorf("chain %s at %s/%d, want prerouting/-300", obj.Name, obj.Hook, obj.Prio)
			}
			chains = append(chains, obj.Name)
		case o["rule"] != nil:
			rules++
		}
	}
	slices.Sort(sets)
	return sets, chains, rules
}

func TestInitCreatesStructureIdempotently(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	for i := range 2 {
		if err := f.Init(context.Background()); err != nil {
			t.Fatalf("Init #%d: %v", i+2, err)
		}
		sets, chains, rules := nftObjects(t, ns)
		if !slices.Equal(sets, []string{"ban4_32", "ban6_64"}) || !slices.Equal(chains, []string{"prerouting"}) || rules != 2 {
			t.Fatalf("after Init #%d: sets %v chains %v rules %d", i+2, sets, chains, rules)
		}
	}
	if err := f.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	text := ns.MustRun(t, "nft", "list", "table", "inet", "doorman")
	for _, want := range []string{"type filter hook prerouting priority raw; policy accept;",
		"ip saddr @ban4_32 counter packets 0 bytes 0 drop",
		"ip6 saddr & ffff:ffff:ffff:ffff:: == @ban6_64 counter packets 0 bytes 0 drop"} {
		if !strings.Contains(text, want) {
			t.Errorf("nft list lacks %q:\n%s", want, text)
		}
	}
}

func TestConformance(t *testing.T) {
	fwtest.Run(t, func(t *testing.T, ns *netnstest.NS) firewall.Firewall { return newFirewall(t, ns) })
}

func TestBadConfig(t *testing.T) {
	for _, c := range []nft.Config{{Table: "bad name"}, {NetNS: "/nonexistent/ns"}, {Set4: "x", Set6: "x"},
		{IPv6PrefixLen: 129}, {BatchSize: 50000}} {
		if f, err := nft.New(c, nil); err == nil || !strings.HasPrefix(err.Error(), "nft: ") {
			t.Errorf("New(%+v) = %v, want an nft: error", c, err)
			if f != nil {
				f.Close()
			}
		}
	}
}

func TestOnDemandSetsAndMappedAddresses(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	if err := f.Add(ctx, []firewall.Entry{{Prefix: pfx("203.0.113.0/24")}, {Prefix: pfx("::ffff:198.51.100.9/128")}}); err != nil {
		t.Fatal(err)
	}
	m := listMap(t, f)
	if _, ok := m[pfx("203.0.113.0/24")]; !ok || len(m) != 2 {
		t.Fatalf("List = %v", m)
	}
	if _, ok := m[pfx("198.51.100.9/32")]; !ok {
		t.Fatalf("IPv4-mapped entry not stored as IPv4: %v", m)
	}
	sets, _, rules := nftObjects(t, ns)
	if !slices.Equal(sets, []string{"ban4_24", "ban4_32", "ban6_64"}) || rules != 3 {
		t.Fatalf("sets %v rules %d", sets, rules)
	}
	// A new Firewall (a restarted agent) learns the /24 set and keeps it.
	g := newFirewall(t, ns)
	ns.MustRun(t, "nft", "flush", "ruleset")
	if err := g.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Check after flush = %v", err)
	}
	if err := g.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if sets, _, rules := nftObjects(t, ns); len(sets) != 3 || rules != 3 {
		t.Fatalf("after restart and repair: sets %v rules %d", sets, rules)
	}
}

func TestCheckDetectsFlushAndInitRepairs(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	// Someone else's table must survive everything doorman does.
	ns.MustRun(t, "nft", "add table ip other; add chain ip other c { type filter hook input priority 0; }; add rule ip other c counter accept")
	cases := []struct {
		name string
		cmd  string
	}{
		{"flush ruleset", "flush ruleset"},
		{"delete table", "delete table inet doorman"},
		{"flush chain", "flush chain inet doorman prerouting"},
		{"delete rule's set", "flush chain inet doorman prerouting; delete set inet doorman ban6_64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := f.Init(ctx); err != nil {
				t.Fatal(err)
			}
			if c.name != "flush ruleset" {
				ns.MustRun(t, "nft", "add table ip other; add chain ip other c { type filter hook input priority 0; }; add rule ip other c counter accept")
			}
			ns.MustRun(t, "nft", c.cmd)
			if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
				t.Fatalf("Check after %q = %v, want ErrMissing", c.cmd, err)
			}
			if err := f.Delete(ctx, []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8::/64")}); err != nil {
				t.Fatalf("Delete with parts missing: %v", err)
			}
			if err := f.Init(ctx); err != nil {
				t.Fatalf("Init after %q: %v", c.cmd, err)
			}
			if err := f.Check(ctx); err != nil {
				t.Fatalf("Check after repair: %v", err)
			}
			sets, _, rules := nftObjects(t, ns)
			if len(sets) != 2 || rules != 2 {
				t.Fatalf("after repair: sets %v rules %d", sets, rules)
			}
		})
	}
	if out := ns.MustRun(t, "nft", "list", "table", "ip", "other"); !strings.Contains(out, "counter") {
		t.Fatalf("other table changed: %s", out)
	}
}

func newFW(b *testing.B, ns *netnstest.NS) firewall.Firewall { return newFirewall(b, ns) }

func BenchmarkRestore100k(b *testing.B) { fwtest.BenchRestore(b, newFW, 100_000) }

// BenchmarkRestore100kPages adds the 100,000 bans in the pages of 4,000
// that the Intrusion Monitor gets from Redis.
func BenchmarkRestore100kPages(b *testing.B) { fwtest.BenchRestorePages(b, newFW, 100_000, 4000) }

func BenchmarkAddLatency(b *testing.B) { fwtest.BenchAddLatency(b, newFW, 10_000) }

func TestTeardown(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	ns.MustRun(t, "nft", "add table ip other")
	if err := f.Add(ctx, []firewall.Entry{{Prefix: pfx("198.51.100.1/32")}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second Teardown finds nothing and succeeds
		if err := f.Teardown(ctx); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
	}
	if out := ns.MustRun(t, "nft", "list", "tables"); strings.TrimSpace(out) != "table ip other" {
		t.Fatalf("tables after Teardown: %q", out)
	}
	if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Check after Teardown = %v", err)
	}
}
