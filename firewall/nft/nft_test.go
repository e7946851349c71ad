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
	"github.com/asterisksupport/doorman/firewall/netnstest"
	"github.com/asterisksupport/doorman/firewall/nft"
)

func newFirewall(t *testing.T, ns *netnstest.NS) *nft.Firewall {
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

func TestAddListDelete(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	err := f.Add(ctx, []firewall.Entry{
		{Prefix: pfx("198.51.100.7/32"), Timeout: time.Hour},
		{Prefix: pfx("198.51.100.8/32")},
		{Prefix: pfx("2001:db8:1:2:3::9/64"), Timeout: time.Minute}, // host bits are cleared
		{Prefix: pfx("203.0.113.0/24")},                             // a new length: set created on demand
		{Prefix: pfx("::ffff:198.51.100.9/128")},                    // IPv4-mapped: stored as IPv4
	})
	if err != nil {
		t.Fatal(err)
	}
	m := listMap(t, f)
	want := map[string]func(time.Duration) bool{
		"198.51.100.7/32":   func(d time.Duration) bool { return d > 59*time.Minute && d <= time.Hour },
		"198.51.100.8/32":   func(d time.Duration) bool { return d == 0 },
		"2001:db8:1:2::/64": func(d time.Duration) bool { return d > 50*time.Second && d <= time.Minute },
		"203.0.113.0/24":    func(d time.Duration) bool { return d == 0 },
		"198.51.100.9/32":   func(d time.Duration) bool { return d == 0 },
	}
	if len(m) != len(want) {
		t.Fatalf("List = %v, want %d entries", m, len(want))
	}
	for p, ok := range want {
		d, found := m[pfx(p)]
		if !found || !ok(d) {
			t.Errorf("List[%s] = %v (found %v)", p, d, found)
		}
	}
	if err := f.Check(ctx); err != nil {
		t.Fatalf("Check with on-demand set: %v", err)
	}
	// Delete present and absent entries, of known and unknown lengths.
	err = f.Delete(ctx, []netip.Prefix{pfx("198.51.100.7/32"), pfx("198.51.100.99/32"),
		pfx("2001:db8:1:2::/64"), pfx("2001:db8::/48"), pfx("203.0.113.0/24")})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	m = listMap(t, f)
	if len(m) != 2 || m[pfx("198.51.100.8/32")] != 0 {
		t.Fatalf("after Delete: %v", m)
	}
	if err := f.Delete(ctx, []netip.Prefix{pfx("198.51.100.7/32")}); err != nil {
		t.Fatalf("Delete twice: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	for _, e := range []firewall.Entry{
		{},
		{Prefix: pfx("0.0.0.0/0")},
		{Prefix: pfx("192.0.2.1/32"), Timeout: -time.Second},
	} {
		if err := f.Add(ctx, []firewall.Entry{e}); err == nil || !strings.HasPrefix(err.Error(), "nft: ") {
			t.Errorf("Add(%v) = %v, want an nft: error", e, err)
		}
	}
	if _, err := nft.New(nft.Config{Table: "bad name"}, nil); err == nil {
		t.Error("New accepted a bad table name")
	}
	if _, err := nft.New(nft.Config{NetNS: "/nonexistent/ns"}, nil); err == nil {
		t.Error("New accepted a missing netns")
	}
}

func TestTimeoutRefreshAndPermanent(t *testing.T) {
	ns := netnstest.New(t)
	f := newFirewall(t, ns)
	ctx := context.Background()
	short, perm := pfx("198.51.100.1/32"), pfx("198.51.100.2/32")
	if err := f.Add(ctx, []firewall.Entry{{Prefix: short, Timeout: 10 * time.Second}, {Prefix: perm, Timeout: time.Second}}); err != nil {
		t.Fatal(err)
	}
	// Refresh: a longer timeout replaces the shorter one; perm becomes permanent.
	if err := f.Add(ctx, []firewall.Entry{{Prefix: short, Timeout: time.Hour}, {Prefix: perm}}); err != nil {
		t.Fatal(err)
	}
	m := listMap(t, f)
	if m[short] < 59*time.Minute || m[perm] != 0 {
		t.Fatalf("after refresh: %v", m)
	}
	// Refresh to a short timeout, then it disappears; the permanent one stays.
	if err := f.Add(ctx, []firewall.Entry{{Prefix: short, Timeout: 1500 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if d := listMap(t, f)[short]; d <= 0 || d > 1500*time.Millisecond {
		t.Fatalf("after refresh to 1.5s: %v left", d)
	}
	netnstest.Eventually(t, 10*time.Second, func() bool {
		_, ok := listMap(t, f)[short]
		return !ok
	}, "%v still listed", short)
	if d, ok := listMap(t, f)[perm]; !ok || d != 0 {
		t.Fatalf("permanent entry: %v %v", d, ok)
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
