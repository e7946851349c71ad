package intrusion

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
)

func TestFirstFailureBansTemporarily(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.m.Handle(failed("203.0.113.5:5060", "a1"))
	p := pfx("203.0.113.5/32")
	h.waitBanned(p, false)
	if exp := h.fw.snapshot()[p]; exp.Sub(h.clock.Now()) != 30*time.Second {
		t.Errorf("firewall timeout %s, want 30s", exp.Sub(h.clock.Now()))
	}
	waitFor(t, "ban in the store", func() bool { _, ok := h.store.ban(p); return ok })
	b, _ := h.store.ban(p)
	if b.Permanent || b.Server != "pbx-a" || b.Strikes != 1 || !strings.Contains(b.Reason, "InvalidAccountID") ||
		!b.Expires.Equal(h.clock.Now().Add(30*time.Second)) {
		t.Errorf("stored ban %+v", b)
	}
	if got := value(t, h.m.met.bans.WithLabelValues("temporary", "local")); got != 1 {
		t.Errorf("bans{temporary,local} = %v", got)
	}
	if got := value(t, h.m.met.latency); got != 1 {
		t.Errorf("latency samples = %v, want 1", got)
	}
	// Events of the same source in flight before the ban add no ban.
	h.m.Handle(failed("203.0.113.5:5060", "a2"))
	h.settle()
	if got := value(t, h.m.met.bans); got != 1 {
		t.Errorf("bans = %v after an in-flight attempt, want 1", got)
	}
}

func TestThreshold(t *testing.T) {
	cfg := testConfig()
	cfg.Threshold = 3
	h := startMonitor(t, cfg)
	for i := range 2 {
		h.m.Handle(failed("203.0.113.6:5060", "c"+string(rune('0'+i))))
	}
	h.settle()
	if n := h.fw.count(); n != 0 {
		t.Fatalf("banned before the threshold")
	}
	if got := h.store.counter(strikeKey(pfx("203.0.113.6/32"))); got != 2 {
		t.Fatalf("shared strikes = %d, want 2", got)
	}
	h.m.Handle(failed("203.0.113.6:5060", "c3"))
	h.waitBanned(pfx("203.0.113.6/32"), false)
}

// A legitimate user is back after the ban time; an attacker who keeps
// trying is banned for longer each time and then permanently.
func TestBanLiftsAndEscalates(t *testing.T) {
	cfg := testConfig()
	cfg.PermanentAfter = 3
	cfg.BanTimeFactor = 2
	h := startMonitor(t, cfg)
	p := pfx("198.51.100.77/32")
	for i, want := range []time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second} {
		h.m.Handle(failed("198.51.100.77:5060", "round"))
		h.waitBanned(p, false)
		if got := h.fw.snapshot()[p].Sub(h.clock.Now()); got != want {
			t.Fatalf("ban %d lasts %s, want %s", i+1, got, want)
		}
		h.settle()
		h.clock.Advance(want + time.Second)
		if in, _ := h.fw.has(p); in {
			t.Fatalf("ban %d did not lift", i+1)
		}
	}
	if got := h.store.counter(escalationKey(p)); got != 3 {
		t.Fatalf("shared escalation count = %d, want 3", got)
	}
	h.m.Handle(failed("198.51.100.77:5060", "round"))
	h.waitBanned(p, true)
	waitFor(t, "permanent ban in the store", func() bool { b, ok := h.store.ban(p); return ok && b.Permanent })
	h.clock.Advance(48 * time.Hour)
	if in, perm := h.fw.has(p); !in || !perm {
		t.Fatal("permanent ban lifted")
	}
}

// Temporary bans decided on different servers count together.
func TestEscalationAcrossServers(t *testing.T) {
	cfg := testConfig()
	cfg.PermanentAfter = 2
	clock := newFakeClock()
	store := newFakeStore(clock)
	a := newHarness(t, cfg, clock, store, store, newFakeFirewall(clock), "pbx-a")
	b := newHarness(t, cfg, clock, store, store, newFakeFirewall(clock), "pbx-b")
	a.start()
	b.start()
	p := pfx("198.51.100.8/32")
	for i, h := range []*harness{a, b} {
		h.m.Handle(failed("198.51.100.8:5060", "x"))
		h.waitBanned(p, false)
		other := []*harness{b, a}[i]
		other.waitBanned(p, false)
		h.settle()
		clock.Advance(31 * time.Second)
	}
	// pbx-a believes one temporary ban happened; the store knows two.
	a.m.Handle(failed("198.51.100.8:5060", "x"))
	a.waitBanned(p, true)
	b.waitBanned(p, true)
	if got := value(t, b.m.met.bans.WithLabelValues("permanent", "remote")); got != 1 {
		t.Errorf("pbx-b remote permanent bans = %v", got)
	}
}

func TestNeverBan(t *testing.T) {
	cfg := testConfig()
	cfg.NeverBan = Prefixes{pfx("10.0.0.0/8"), pfx("2001:db8:5:5::1/128")}
	h := startMonitor(t, cfg)
	for _, src := range []string{"10.1.2.3:5060", "127.0.0.1:5060", "[::1]:5060", "[::ffff:127.0.0.1]:5060", "[::ffff:10.9.9.9]:5060"} {
		h.m.Handle(failed(src, "s-"+src))
	}
	// A source whose /64 holds a trusted host is banned alone.
	h.m.Handle(failed("[2001:db8:5:5::66]:5060", "v6"))
	h.waitBanned(pfx("2001:db8:5:5::66/128"), false)
	h.settle()
	if n := h.fw.count(); n != 1 {
		t.Fatalf("firewall holds %v", h.fw.snapshot())
	}
	if got := value(t, h.m.met.skipped.WithLabelValues(skipNeverBan)); got != 5 {
		t.Errorf("skipped never_ban = %v, want 5", got)
	}
	if a, s := value(t, h.m.met.attempts), value(t, h.m.met.strikes); a != 6 || s != 1 {
		t.Errorf("attempts, strikes = %v, %v; want 6, 1", a, s)
	}
	// Bans from the cluster are re-checked against this server's list.
	for _, bad := range []string{"10.9.0.0/16", "0.0.0.0/0", "127.0.0.1/32", "2001:db8:5::/48"} {
		h.store.inject(state.Ban{Prefix: pfx(bad), Permanent: true, Server: "pbx-evil"})
	}
	h.store.inject(state.Ban{Prefix: pfx("192.0.2.99/32"), Permanent: true, Server: "pbx-b"})
	h.waitBanned(pfx("192.0.2.99/32"), true)
	h.settle()
	if n := h.fw.count(); n != 2 {
		t.Fatalf("firewall holds %v", h.fw.snapshot())
	}
	if got := value(t, h.m.met.skipped.WithLabelValues(skipRemoteTrust)); got != 4 {
		t.Errorf("refused feed bans = %v, want 4", got)
	}
	if err := h.m.Ban(context.Background(), pfx("10.0.0.0/16"), 0, "x"); err == nil {
		t.Error("operator ban of a trusted network accepted")
	}
	// A resync must not bring them in either.
	h.store.setDown(false)
	h.settle()
	if n := h.fw.count(); n != 2 {
		t.Fatalf("after resync the firewall holds %v", h.fw.snapshot())
	}
}

func TestIPv6BannedByPrefix(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.m.Handle(failed("[2001:db8:1:2::77]:5060", "a"))
	p := pfx("2001:db8:1:2::/64")
	h.waitBanned(p, false)
	h.m.Handle(failed("[2001:db8:1:2:ffff::99]:5060", "b")) // same /64, in flight
	h.settle()
	if got := value(t, h.m.met.bans); got != 1 {
		t.Errorf("bans = %v, want 1", got)
	}
	if h.fw.count() != 1 {
		t.Errorf("firewall %v", h.fw.snapshot())
	}
}

func TestOnSuccess(t *testing.T) {
	for _, tc := range []struct {
		policy string
		banned bool
	}{{OnSuccessKeep, true}, {OnSuccessReset, false}} {
		t.Run(tc.policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.Threshold = 3
			cfg.OnSuccess = tc.policy
			h := startMonitor(t, cfg)
			src := "192.0.2.50:5060"
			h.m.Handle(failed(src, "1"))
			h.m.Handle(failed(src, "2"))
			ok := failed(src, "3")
			ok.Type = "SuccessfulAuth"
			h.m.Handle(ok)
			h.settle()
			h.m.Handle(failed(src, "4"))
			h.settle()
			if in, _ := h.fw.has(pfx("192.0.2.50/32")); in != tc.banned {
				t.Fatalf("banned = %v, want %v", in, tc.banned)
			}
		})
	}
}

func TestBanAppliedOnEveryServer(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	cfgB := testConfig()
	cfgB.NeverBan = Prefixes{pfx("192.0.2.0/24")} // B trusts what A does not
	a := newHarness(t, testConfig(), clock, store, store, newFakeFirewall(clock), "pbx-a")
	b := newHarness(t, cfgB, clock, store, store, newFakeFirewall(clock), "pbx-b")
	a.start()
	b.start()
	a.m.Handle(failed("203.0.113.44:5060", "z"))
	p := pfx("203.0.113.44/32")
	b.waitBanned(p, false)
	if got := value(t, b.m.met.bans.WithLabelValues("temporary", "remote")); got != 1 {
		t.Errorf("pbx-b remote bans = %v", got)
	}
	a.m.Handle(failed("192.0.2.9:5060", "z"))
	a.waitBanned(pfx("192.0.2.9/32"), false)
	waitFor(t, "pbx-b refuses", func() bool { return value(t, b.m.met.skipped.WithLabelValues(skipRemoteTrust)) == 1 })
	if in, _ := b.fw.has(pfx("192.0.2.9/32")); in {
		t.Fatal("pbx-b applied a ban on its trusted network")
	}
	// An unban on B lifts it on A and resets the shared counters. A's
	// escalation count of the ban is written first: counters gather for
	// 10 ms, and one still queued when another server unbans lands after
	// that server's reset (a race this test does not cover).
	a.settle()
	waitFor(t, "escalation counted", func() bool { return store.counter(escalationKey(p)) == 1 })
	if err := b.m.Unban(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unban on pbx-a", func() bool { in, _ := a.fw.has(p); return !in })
	if in, _ := b.fw.has(p); in {
		t.Fatal("still banned on pbx-b")
	}
	if store.counter(strikeKey(p)) != 0 || store.counter(escalationKey(p)) != 0 {
		t.Fatal("counters not reset")
	}
	a.m.mu.Lock()
	_, kept := a.m.records[p]
	a.m.mu.Unlock()
	if kept {
		t.Error("pbx-a kept its local counters after an unban")
	}
}

func TestStoreDownEnforcesLocallyAndCatchesUp(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.store.setDown(true)
	h.m.Handle(failed("203.0.113.70:5060", "d"))
	p := pfx("203.0.113.70/32")
	h.waitBanned(p, false)
	err := h.m.Ban(context.Background(), pfx("198.51.100.0/24"), 0, "manual")
	if !errors.Is(err, ErrQueued) {
		t.Fatalf("operator ban with the store down: %v, want ErrQueued", err)
	}
	h.waitBanned(pfx("198.51.100.0/24"), true)
	list, err := h.m.List(context.Background())
	if err == nil || len(list) != 2 || !list[0].Pending || !list[1].Pending {
		t.Fatalf("List with the store down = %+v, %v", list, err)
	}
	waitFor(t, "store errors counted", func() bool { return value(t, h.m.met.storeErrors) > 0 })
	h.clock.Advance(10 * time.Second)
	h.store.setDown(false)
	waitFor(t, "catch-up", func() bool {
		_, ok1 := h.store.ban(p)
		_, ok2 := h.store.ban(pfx("198.51.100.0/24"))
		return ok1 && ok2
	})
	list, err = h.m.List(context.Background())
	if err != nil || len(list) != 2 || list[0].Pending || list[1].Pending {
		t.Fatalf("List after catch-up = %+v, %v", list, err)
	}
	if !strings.Contains(h.logText(), "store is back") {
		t.Error("no log line about catching up")
	}
}

func TestFirewallFlushIsRepaired(t *testing.T) {
	h := startMonitor(t, testConfig())
	if err := h.m.Ban(context.Background(), pfx("198.51.100.0/24"), 0, "manual"); err != nil {
		t.Fatal(err)
	}
	h.m.Handle(failed("203.0.113.80:5060", "f"))
	h.waitBanned(pfx("203.0.113.80/32"), false)
	h.settle()
	h.fw.flush()
	h.waitBanned(pfx("198.51.100.0/24"), true)
	h.waitBanned(pfx("203.0.113.80/32"), false)
	if got := value(t, h.m.met.repairs); got < 1 {
		t.Errorf("repairs = %v", got)
	}
	// A ban decided while the set is gone is not lost either.
	h.fw.flush()
	h.m.Handle(failed("203.0.113.81:5060", "f"))
	h.waitBanned(pfx("203.0.113.81/32"), false)
	h.waitBanned(pfx("198.51.100.0/24"), true)
}

func TestResyncReconciles(t *testing.T) {
	h := startMonitor(t, testConfig())
	keep := state.Ban{Prefix: pfx("192.0.2.1/32"), Permanent: true, Server: "pbx-b"}
	gone := state.Ban{Prefix: pfx("192.0.2.2/32"), Permanent: true, Server: "pbx-b"}
	h.store.inject(keep)
	h.store.inject(gone)
	h.waitBanned(keep.Prefix, true)
	h.waitBanned(gone.Prefix, true)
	// Changes whose events were lost, and a stray kernel entry.
	h.store.injectSilently(gone, true)
	missed := state.Ban{Prefix: pfx("192.0.2.3/32"), Expires: h.clock.Now().Add(time.Minute), Server: "pbx-b"}
	h.store.injectSilently(missed, false)
	stray := pfx("192.0.2.4/32")
	if err := h.fw.Add(context.Background(), []firewallEntry{{Prefix: stray}}); err != nil {
		t.Fatal(err)
	}
	h.store.setDown(false) // sends Resync
	h.waitBanned(missed.Prefix, false)
	waitFor(t, "removed ban and stray entry deleted", func() bool {
		in1, _ := h.fw.has(gone.Prefix)
		in2, _ := h.fw.has(stray)
		return !in1 && !in2
	})
	if in, _ := h.fw.has(keep.Prefix); !in {
		t.Fatal("resync removed a live ban")
	}
}

func TestRestoreAtStartInOneBatch(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	now := clock.Now()
	for _, b := range []state.Ban{
		{Prefix: pfx("192.0.2.1/32"), Permanent: true},
		{Prefix: pfx("192.0.2.2/32"), Permanent: true},
		{Prefix: pfx("2001:db8:7::/64"), Permanent: true},
		{Prefix: pfx("192.0.2.3/32"), Expires: now.Add(time.Minute)},
		{Prefix: pfx("192.0.2.4/32"), Expires: now.Add(-time.Minute)}, // expired
		{Prefix: pfx("127.0.0.0/8"), Permanent: true},                 // never banned
	} {
		store.injectSilently(b, false)
	}
	fw := newFakeFirewall(clock)
	h := newHarness(t, testConfig(), clock, store, store, fw, "pbx-a")
	h.start()
	h.waitBanned(pfx("192.0.2.3/32"), false)
	h.settle()
	if fw.count() != 4 || fw.adds != 1 {
		t.Fatalf("restored %v in %d Add calls, want 4 entries in 1", fw.snapshot(), fw.adds)
	}
	if _, perm := fw.has(pfx("2001:db8:7::/64")); !perm {
		t.Fatal("permanent ban restored as temporary")
	}
}

// With the store down at start, what the kernel holds is kept and
// defended against a flush.
func TestStartWithStoreDown(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	store.setDown(true)
	fw := newFakeFirewall(clock)
	_ = fw.Init(context.Background())
	_ = fw.Add(context.Background(), []firewallEntry{{Prefix: pfx("192.0.2.10/32")}})
	h := newHarness(t, testConfig(), clock, store, store, fw, "pbx-a")
	h.start()
	waitFor(t, "kernel bans adopted", func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.bans[pfx("192.0.2.10/32")] != nil
	})
	fw.flush()
	h.waitBanned(pfx("192.0.2.10/32"), true)
}

func TestBadInputIsCountedAndSkipped(t *testing.T) {
	cfg := testConfig()
	cfg.Services = []string{"pjsip"}
	h := startMonitor(t, cfg)
	noAddr := failed("192.0.2.1:1", "x")
	noAddr.Remote = netip.AddrPort{}
	unspec := failed("0.0.0.0:0", "x")
	amiEv := failed("192.0.2.1:1", "x")
	amiEv.Service = "AMI"
	bogus := failed("192.0.2.1:1", "x")
	bogus.Type = "Bogus\x00Type"
	for _, ev := range []ami.SecurityEvent{noAddr, unspec, amiEv, bogus, {}} {
		h.m.Handle(ev)
	}
	h.store.inject(state.Ban{Server: "pbx-b"}) // no prefix
	h.settle()
	if h.fw.count() != 0 {
		t.Fatalf("banned on bad input: %v", h.fw.snapshot())
	}
	for reason, want := range map[string]float64{skipBadAddress: 2, skipService: 1, skipIgnored: 2} {
		if got := value(t, h.m.met.skipped.WithLabelValues(reason)); got != want {
			t.Errorf("skipped{%s} = %v, want %v", reason, got, want)
		}
	}
	waitFor(t, "bad feed ban counted", func() bool { return value(t, h.m.met.skipped.WithLabelValues(skipBadBan)) == 1 })
	if got := value(t, h.m.met.eventsOther); got != 2 {
		t.Errorf("events{other} = %v, want 2", got)
	}
	// The service filter is case-insensitive: PJSIP counts.
	h.m.Handle(failed("192.0.2.1:1", "y"))
	h.waitBanned(pfx("192.0.2.1/32"), false)
}

func TestOperatorAPI(t *testing.T) {
	h := startMonitor(t, testConfig())
	ctx := context.Background()
	if err := h.m.Ban(ctx, pfx("198.51.100.0/24"), time.Hour, "abuse report"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Ban(ctx, pfx("2001:db8:9::5/64"), 0, ""); err != nil {
		t.Fatal(err)
	}
	h.waitBanned(pfx("198.51.100.0/24"), false)
	h.waitBanned(pfx("2001:db8:9::/64"), true)
	h.m.Handle(failed("203.0.113.3:5060", "q"))
	h.settle()
	h.clock.Advance(10 * time.Minute)
	list, err := h.m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 { // the 30 s ban has expired
		t.Fatalf("List = %+v", list)
	}
	got := map[string]BanInfo{}
	for _, bi := range list {
		got[bi.Prefix.String()] = bi
	}
	v4 := got["198.51.100.0/24"]
	if v4.Reason != "abuse report" || v4.Server != "pbx-a" || v4.TimeLeft != 50*time.Minute || v4.Permanent {
		t.Errorf("v4 ban %+v", v4)
	}
	if v6 := got["2001:db8:9::/64"]; !v6.Permanent || v6.TimeLeft != 0 || v6.Reason != "operator" {
		t.Errorf("v6 ban %+v", v6)
	}
	// Unbanning one address of a banned /64 lifts the /64.
	if err := h.m.Unban(ctx, pfx("2001:db8:9::1234/128")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v6 unban", func() bool { in, _ := h.fw.has(pfx("2001:db8:9::/64")); return !in })
	if _, ok := h.store.ban(pfx("2001:db8:9::/64")); ok {
		t.Fatal("unban did not reach the store")
	}
	for _, tc := range []struct {
		p netip.Prefix
		d time.Duration
	}{{netip.Prefix{}, 0}, {pfx("192.0.2.0/24"), -time.Second}} {
		if err := h.m.Ban(ctx, tc.p, tc.d, ""); err == nil {
			t.Errorf("Ban(%v, %s) accepted", tc.p, tc.d)
		}
	}
	if err := h.m.Unban(ctx, netip.Prefix{}); err == nil {
		t.Error("Unban of an invalid prefix accepted")
	}
}

func TestNewRequiresDeps(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	fw := newFakeFirewall(clock)
	for name, d := range map[string]Deps{
		"store":    {Firewall: fw, Server: "a"},
		"firewall": {Store: store, Server: "a"},
		"server":   {Store: store, Firewall: fw},
	} {
		if _, err := New(DefaultConfig(), d); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("missing %s: %v", name, err)
		}
	}
}

func TestBatchStoreIsUsed(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, testConfig(), clock, fakeBatchStore{store}, store, newFakeFirewall(clock), "pbx-a")
	h.start()
	for i := range 200 {
		ev := failed("192.0.2.1:5060", "b")
		ev.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 64, 1, byte(i)}), 5060)
		h.m.Handle(ev)
	}
	h.settle()
	waitFor(t, "all bans stored", func() bool {
		l, _ := store.ListBans(context.Background())
		return len(l) == 200
	})
	waitFor(t, "IncrMany used", func() bool { return store.callCount("incr_many") > 0 })
}

// With a RoundWriter, the counter updates waiting when the ban writer
// makes a round go along in it: they need no round of their own.
func TestCountersRideBanRounds(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	cfg := testConfig()
	cfg.Threshold = 2
	h := newHarness(t, cfg, clock, fakeRoundStore{fakeBatchStore{store}}, store, newFakeFirewall(clock), "pbx-a")
	h.start()
	h.m.Handle(failed("192.0.2.50:5060", "s1")) // a strike: a counter update
	// The counter worker's own round could come first only on a machine
	// stalled for 9 ms; without its timer, only the ban writer can send it.
	h.m.counters.shards[0].due.Stop()
	h.m.Handle(failed("192.0.2.51:5060", "s2"))
	h.m.Handle(failed("192.0.2.51:5060", "s3")) // the threshold: a ban
	waitFor(t, "ban and counters stored", func() bool {
		_, banned := store.ban(pfx("192.0.2.51/32"))
		return banned && store.counter(strikeKey(pfx("192.0.2.50/32"))) == 1 &&
			store.counter(strikeKey(pfx("192.0.2.51/32"))) == 1
	})
	if n := store.callCount("incr_many"); n != 0 {
		t.Errorf("%d counter rounds of their own, want 0", n)
	}
	if n := store.callCount("write_round"); n != 1 {
		t.Errorf("%d WriteRound calls, want 1", n)
	}
	h.settle()
}

// Changes whose feed events were lost are picked up by the periodic resync.
func TestPeriodicResync(t *testing.T) {
	cfg := testConfig()
	cfg.ResyncInterval = 50 * time.Millisecond
	h := startMonitor(t, cfg)
	b := state.Ban{Prefix: pfx("192.0.2.77/32"), Permanent: true, Server: "pbx-b"}
	h.store.injectSilently(b, false)
	h.waitBanned(b.Prefix, true)
	h.store.injectSilently(b, true)
	waitFor(t, "silent removal applied", func() bool { in, _ := h.fw.has(b.Prefix); return !in })
}

func TestBanDurationGrowsToTheCap(t *testing.T) {
	cfg := testConfig()
	cfg.BanTime, cfg.BanTimeFactor, cfg.MaxBanTime = 30*time.Second, 3, 10*time.Minute
	h := newHarness(t, cfg, newFakeClock(), newFakeStore(newFakeClock()), nil, newFakeFirewall(newFakeClock()), "a")
	for prior, want := range []time.Duration{30 * time.Second, 90 * time.Second, 270 * time.Second, 10 * time.Minute, 10 * time.Minute} {
		if got := h.m.banDuration(int64(prior)); got != want {
			t.Errorf("after %d bans: %s, want %s", prior, got, want)
		}
	}
	if got := h.m.banDuration(1 << 40); got != cfg.MaxBanTime {
		t.Errorf("huge prior count: %s", got)
	}
	h.m.cfg.BanTimeFactor = 1
	if got := h.m.banDuration(1 << 40); got != cfg.BanTime {
		t.Errorf("constant ban time after many bans: %s", got)
	}
}

// Events handled before Run are enforced once it starts.
func TestHandleBeforeRun(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, testConfig(), clock, store, store, newFakeFirewall(clock), "pbx-a")
	h.m.Handle(failed("203.0.113.99:5060", "early"))
	h.start()
	h.waitBanned(pfx("203.0.113.99/32"), false)
	waitFor(t, "early ban stored", func() bool { _, ok := store.ban(pfx("203.0.113.99/32")); return ok })
}

// HandleBatch applies the fresh bans of a batch itself, in one firewall
// call, before it returns, when the firewall queue is idle; when the queue
// is busy they join it instead, without waiting.
func TestHandleBatch(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.settle()
	h.fw.mu.Lock()
	adds0 := h.fw.adds
	h.fw.mu.Unlock()
	a, b := pfx("203.0.113.40/32"), pfx("203.0.113.41/32")
	h.m.HandleBatch([]ami.SecurityEvent{
		failed("203.0.113.40:5060", "b1"),
		failed("203.0.113.41:5060", "b2"),
		failed("203.0.113.40:5060", "b1"), // same attempt
		{Type: "SuccessfulAuth", Service: "PJSIP", Remote: netip.MustParseAddrPort("198.51.100.1:5060")},
	})
	for _, p := range []netip.Prefix{a, b} {
		if in, perm := h.fw.has(p); !in || perm {
			t.Fatalf("%s in the firewall: %v (permanent %v) when HandleBatch returned", p, in, perm)
		}
	}
	h.fw.mu.Lock()
	adds := h.fw.adds - adds0
	h.fw.mu.Unlock()
	if adds != 1 {
		t.Errorf("%d firewall Add calls for the batch, want 1", adds)
	}
	if got := value(t, h.m.met.latency); got != 2 {
		t.Errorf("latency samples = %v, want 2", got)
	}
	if got := value(t, h.m.met.attempts); got != 2 {
		t.Errorf("attempts = %v, want 2", got)
	}
	waitFor(t, "bans in the store", func() bool {
		_, okA := h.store.ban(a)
		_, okB := h.store.ban(b)
		return okA && okB
	})

	// A firewall call is running: the batch's ban joins the queue.
	h.m.fwq.call.Lock()
	c := pfx("203.0.113.42/32")
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.m.HandleBatch([]ami.SecurityEvent{failed("203.0.113.42:5060", "b3")})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("HandleBatch waited for a running firewall call")
	}
	if in, _ := h.fw.has(c); in {
		t.Fatal("ban applied while a firewall call ran")
	}
	h.m.fwq.call.Unlock()
	h.waitBanned(c, false)
}

// A reset queued after an increment of the same counter, in one round,
// is written after it.
func TestCounterResetAfterIncrement(t *testing.T) {
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, testConfig(), clock, fakeBatchStore{store}, store, newFakeFirewall(clock), "pbx-a")
	h.start()
	p := pfx("192.0.2.60/32")
	h.m.counters.enqueue(counterOp{kind: opStrike, prefix: p, recv: clock.Now()})
	h.m.counters.enqueue(counterOp{kind: opReset, prefix: p})
	h.settle()
	if n := store.counter(strikeKey(p)); n != 0 {
		t.Fatalf("strikes after increment then reset = %d, want 0", n)
	}
}

// A fresh ban held by a batch and a delete of the same prefix pushed before
// the batch ends reach the firewall in the order decided: add, then delete.
// Before the hold list lived in the queue, the delete ran first and the
// batch then re-added a prefix the monitor no longer banned.
func TestHeldBanKeepsOrder(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.settle()
	p := pfx("203.0.113.50/32")
	q := h.m.fwq
	q.hold(fwOp{kind: fwAdd, prefix: p, expires: h.clock.Now().Add(time.Minute), recv: h.clock.Now()})
	q.del(p) // e.g. an unban from the feed while the batch is being decided
	q.applyHeld()
	// A marker behind both: once it has run, so have they.
	if err := q.do(context.Background(), func(context.Context, firewall.Firewall) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if in, _ := h.fw.has(p); in {
		t.Fatalf("%s in the firewall: the held add ran after the later delete", p)
	}
}
