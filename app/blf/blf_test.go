package blf

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/aritest"
)

// node is one simulated server: its Asterisk (fake ARI and AMI) and its monitor.
type node struct {
	name     string
	ari      *aritest.Fake   // nil when the node runs over HTTP
	srv      *aritest.Server // the HTTP ARI, if any
	asterisk asterisk        // another Asterisk (the simulator's ARI), if any
	client   ari.Client
	ami      *fakeAMI
	mon      *Monitor
	cancel   context.CancelFunc
	done     chan error
}

func testConfig() Config {
	c := DefaultConfig()
	c.HeartbeatInterval = 100 * time.Millisecond
	c.HeartbeatTTL = 2 * time.Second // generous: the test machine is shared and may stall goroutines
	c.RetryInterval = 50 * time.Millisecond
	c.StoreTimeout = time.Second
	return c
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNode runs a monitor for server name on store until the test ends.
// nodeOpts customise startNode: dial sets n.client (default: a fake),
// ready runs once the monitor exists, before Run.
type nodeOpts struct {
	dial, ready func(*node)
}

func startNode(t testing.TB, store Store, name string, cfg Config, opts ...nodeOpts) *node {
	t.Helper()
	n := &node{name: name, ami: &fakeAMI{}, done: make(chan error, 1)}
	for _, o := range opts {
		if o.dial != nil {
			o.dial(n)
		}
	}
	if n.client == nil {
		n.ari = aritest.New("id-" + name)
		n.client = n.ari
	}
	mon, err := New(cfg, Deps{Store: store, ARI: n.client, AMI: n.ami, Server: name, Log: testLog(t).With("server", name),
		Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	n.mon = mon
	for _, o := range opts {
		if o.ready != nil {
			o.ready(n)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- mon.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	<-n.done
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitStasis(t testing.TB, n *node, name, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for n.ari.Stasis(name) != want {
		if time.Now().After(deadline) {
			n.mon.w.mu.Lock()
			t.Fatalf("%s: %s = %q, want %s; desired %+v written %q queued %v inflight %v failed %v; attempts %d",
				n.name, name, n.ari.Stasis(name), want, n.mon.w.desired[name], n.mon.w.written[name],
				n.mon.w.queued[name], n.mon.w.inflight[name], n.mon.w.failed[name], n.ari.Attempts())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func cluster(t *testing.T, names ...string) (*memStore, map[string]*node) {
	store := newMemStore()
	_, nodes := clusterOn(t, func() Store { return store }, names...)
	return store, nodes
}

func TestRingingThenInUseFollowsOnOthers(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		store, n := clusterOn(t, open, "a", "b", "c")
		a, b, c := n["a"], n["b"], n["c"]
		for _, st := range []string{Ringing, InUse, NotInUse} {
			a.ari.Emit("PJSIP/1001", st)
			waitStasis(t, b, "Stasis:1001", st)
			waitStasis(t, c, "Stasis:1001", st)
			if got := stored(t, store, "a", "PJSIP/1001"); got != st {
				t.Fatalf("store has %q for a's PJSIP/1001, want %q", got, st)
			}
		}
		// a's own Stasis:1001 carries only the others: nobody else has 1001.
		waitStasis(t, a, "Stasis:1001", Unavailable)
		for _, w := range a.ari.WritesTo("Stasis:1001") {
			if w != Unavailable {
				t.Fatalf("a wrote its own phone's state %q to its Stasis:1001", w)
			}
		}
		if got := b.ari.WritesTo("Stasis:1001"); !slices.Contains(got, Ringing) || !slices.Contains(got, InUse) {
			t.Fatalf("b's writes %v lack RINGING or INUSE", got)
		}
	})
}

func TestPhoneOnTwoServersSeesOnlyOthers(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b", "c")
		a, b, c := n["a"], n["b"], n["c"]
		a.ari.Emit("PJSIP/1001", InUse)
		b.ari.Emit("PJSIP/1001", Ringing)
		waitStasis(t, c, "Stasis:1001", RingInUse) // both others
		waitStasis(t, a, "Stasis:1001", Ringing)   // only b
		waitStasis(t, b, "Stasis:1001", InUse)     // only a
		a.ari.Emit("PJSIP/1001", Unavailable)      // a's phone unregisters
		waitStasis(t, c, "Stasis:1001", Ringing)
		waitStasis(t, b, "Stasis:1001", Unavailable)
		b.ari.Emit("PJSIP/1001", NotInUse)
		waitStasis(t, c, "Stasis:1001", NotInUse) // NOT_INUSE outranks UNAVAILABLE
		waitStasis(t, a, "Stasis:1001", NotInUse)
	})
}

func TestEchoNeverCausesSecondWriteOrPublish(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		store, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		a.ari.Emit("PJSIP/1001", InUse)
		waitStasis(t, b, "Stasis:1001", InUse)
		a.ari.Emit("PJSIP/1002", NotInUse) // a later change, to know the pipeline moved on
		waitStasis(t, b, "Stasis:1002", NotInUse)
		// The echoes of b's PUTs sat in b's event stream all along; give a
		// foreign one too (another app's write): none may be published or rewritten.
		b.ari.Emit("Stasis:1001", Busy)
		a.ari.Emit("PJSIP/1003", Ringing)
		waitStasis(t, b, "Stasis:1003", Ringing)

		if got := b.ari.WritesTo("Stasis:1001"); !slices.Equal(got, []string{InUse}) {
			t.Fatalf("b wrote Stasis:1001 %v, want exactly [INUSE]", got)
		}
		for _, srv := range []string{"a", "b"} {
			for _, dev := range []string{"Stasis:1001", "Stasis:1002", "Stasis:1003"} {
				if st := stored(t, store, srv, dev); st != "" {
					t.Fatalf("%s published its Stasis device %s=%s", srv, dev, st)
				}
			}
		}
		if got := testutil.ToFloat64(b.mon.met.published); got != 0 {
			t.Fatalf("b published %v changes, want 0 (it has no phones)", got)
		}
	})
}

func TestReconnectWithStaleStatesConverges(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		a.ari.Emit("PJSIP/1001", InUse)
		a.ari.Emit("PJSIP/1002", NotInUse)
		waitStasis(t, b, "Stasis:1001", InUse)
		waitStasis(t, b, "Stasis:1002", NotInUse)
		// Asterisk b restarts: astdb replays old values, one for a phone that
		// no longer exists anywhere.
		b.ari.Restart(map[string]string{"Stasis:1001": Ringing, "Stasis:1002": NotInUse, "Stasis:9999": Busy})
		waitStasis(t, b, "Stasis:1001", InUse)
		waitStasis(t, b, "Stasis:9999", Unavailable)
		if got := b.ari.WritesTo("Stasis:1002"); len(got) != 1 {
			t.Fatalf("Stasis:1002 was right after the restart but was written %v", got)
		}
		// A change after the reconnect still flows.
		a.ari.Emit("PJSIP/1002", Ringing)
		waitStasis(t, b, "Stasis:1002", Ringing)
	})
}

func TestReconnectSnapshotsFromAMI(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		store, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		a.ami.set([2]string{"PJSIP/1001", InUse}, [2]string{"Stasis:1001", Busy}, [2]string{"Local/7000@default", NotInUse},
			[2]string{"SIP/2001", Ringing})
		a.ari.Reconnect() // gap: re-read real devices through AMI
		waitStasis(t, b, "Stasis:1001", InUse)
		waitStasis(t, b, "Stasis:2001", Ringing)
		if st := stored(t, store, "a", "Stasis:1001"); st != "" {
			t.Fatalf("snapshot published a Stasis device: %s", st)
		}
		if st := stored(t, store, "a", "Local/7000@default"); st != "" {
			t.Fatalf("snapshot published a Local channel: %s", st)
		}
		// AMI relogin: the phone went away meanwhile.
		a.ami.set([2]string{"SIP/2001", Ringing})
		calls := a.ami.actionCalls()
		a.ami.relogin()
		eventually(t, "a second AMI snapshot", func() bool { return a.ami.actionCalls() > calls })
		waitStasis(t, b, "Stasis:1001", Unavailable)
	})
}

func TestARI500ForOneDeviceDoesNotStopOthers(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		b.ari.SetPutError("Stasis:1001", &ari.HTTPError{Method: "PUT", Path: "/deviceStates/Stasis:1001", Code: 500, Message: "Unknown device"})
		a.ari.Emit("PJSIP/1001", InUse)
		a.ari.Emit("PJSIP/1002", Ringing)
		waitStasis(t, b, "Stasis:1002", Ringing)
		eventually(t, "the 500 counted", func() bool {
			return testutil.ToFloat64(b.mon.met.errors.WithLabelValues("ari_put_500")) >= 1
		})
		a.ari.Emit("PJSIP/1003", Busy)
		waitStasis(t, b, "Stasis:1003", Busy)
		b.ari.SetPutError("Stasis:1001", nil) // Asterisk recovers: the retry lands
		waitStasis(t, b, "Stasis:1001", InUse)
	})
}

func TestUnknownStateAndUnmappedDevicesAreCountedAndSkipped(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		store, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		a.ari.Emit("PJSIP/1001", "SIDEWAYS")
		a.ari.Emit("Local/7000@default", InUse)
		a.ari.Emit("PJSIP/1002", InUse)
		waitStasis(t, b, "Stasis:1002", InUse)
		if st := stored(t, store, "a", "PJSIP/1001"); st != "" {
			t.Fatalf("unknown state published: %q", st)
		}
		if st := stored(t, store, "a", "Local/7000@default"); st != "" {
			t.Fatalf("unmapped device published: %q", st)
		}
		if got := testutil.ToFloat64(a.mon.met.errors.WithLabelValues(causeUnknownState)); got != 1 {
			t.Fatalf("unknown_state counted %v, want 1", got)
		}
		if got := testutil.ToFloat64(a.mon.met.errors.WithLabelValues(causeUnmapped)); got != 1 {
			t.Fatalf("unmapped_device counted %v, want 1", got)
		}
	})
}

func TestDeadServerTurnsUnavailable(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b", "c")
		a, b, c := n["a"], n["b"], n["c"]
		a.ari.Emit("PJSIP/1001", InUse)
		c.ari.Emit("PJSIP/1001", NotInUse)
		waitStasis(t, b, "Stasis:1001", InUse)
		start := time.Now()
		a.stop()                                  // a dies: no more heartbeats; its states stay in the store
		waitStasis(t, b, "Stasis:1001", NotInUse) // only c counts now
		waitStasis(t, c, "Stasis:1001", Unavailable)
		bound := testConfig().HeartbeatTTL + 2*testConfig().HeartbeatInterval + time.Second
		if d := time.Since(start); d > bound {
			t.Fatalf("dead server still counted after %s (bound %s)", d, bound)
		}
	})
}

func TestStoreResyncRereadsEverything(t *testing.T) {
	store, n := cluster(t, "a", "b")
	a, b := n["a"], n["b"]
	a.ari.Emit("PJSIP/1001", InUse)
	waitStasis(t, b, "Stasis:1001", InUse)
	// A change the feed lost (written around it), then a Resync.
	store.mu.Lock()
	k := source{"a", "PJSIP/1001"}
	ds := store.states[k]
	ds.State = Busy
	store.states[k] = ds
	store.mu.Unlock()
	a.ami.set([2]string{"PJSIP/1001", Busy}) // a's Asterisk agrees: a's resnapshot changes nothing
	store.resync()
	waitStasis(t, b, "Stasis:1001", Busy)
}

func TestLampsAndHints(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b")
		n["a"].ari.Emit("PJSIP/1001", InUse)
		n["b"].ari.Emit("PJSIP/1001", Ringing)
		n["b"].ari.Emit("PJSIP/1002", NotInUse)
		waitStasis(t, n["a"], "Stasis:1002", NotInUse)
		waitStasis(t, n["b"], "Stasis:1001", InUse)
		lamps, err := n["a"].mon.Lamps(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(lamps) != 2 {
			t.Fatalf("got %d lamps, want 2: %+v", len(lamps), lamps)
		}
		l := lamps[0]
		if l.Extension != "1001" || l.Stasis != "Stasis:1001" || l.Aggregate != RingInUse ||
			l.Servers["a"] != InUse || l.Servers["b"] != Ringing {
			t.Fatalf("lamp 1001 = %+v", l)
		}
		var sb strings.Builder
		if err := WriteHints(&sb, lamps); err != nil {
			t.Fatal(err)
		}
		want := "exten => 1001,hint,PJSIP/1001&Stasis:1001\nexten => 1002,hint,PJSIP/1002&Stasis:1002\n"
		if sb.String() != want {
			t.Fatalf("hints:\n%s\nwant:\n%s", sb.String(), want)
		}
		sb.Reset()
		if err := WriteLamps(&sb, lamps); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], "EXTENSION") || !strings.Contains(lines[0], "AGGREGATE") ||
			strings.Join(strings.Fields(lines[1]), " ") != "1001 PJSIP/1001 INUSE RINGING RINGINUSE" ||
			strings.Join(strings.Fields(lines[2]), " ") != "1002 PJSIP/1002 - NOT_INUSE NOT_INUSE" {
			t.Fatalf("lamps table:\n%s", sb.String())
		}
	})
}

func TestHealthReportsARIStatus(t *testing.T) {
	_, n := cluster(t, "a")
	if err := n["a"].mon.Health(); err != nil {
		t.Fatalf("healthy monitor: %v", err)
	}
	n["a"].ari.SetStatus(ari.Status{Err: "ARI: 401 unauthorized"})
	if err := n["a"].mon.Health(); err == nil || !strings.Contains(err.Error(), "401 unauthorized") {
		t.Fatalf("Health() = %v, want the 401", err)
	}
}

func TestNewRejectsMissingDeps(t *testing.T) {
	store := newMemStore()
	f := aritest.New("x")
	for _, tc := range []struct {
		name string
		deps Deps
		want string
	}{
		{"no store", Deps{ARI: f, Server: "a"}, "store required"},
		{"no ari", Deps{Store: store, Server: "a"}, "ARI client required"},
		{"no server", Deps{Store: store, ARI: f}, "server name required"},
	} {
		if _, err := New(DefaultConfig(), tc.deps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestServerBackAfterLapseCountsAgain: while a server is dead the store
// hides its states, so a reload then forgets them; when it beats again its
// states must be read again.
func TestServerBackAfterLapseCountsAgain(t *testing.T) {
	store, n := cluster(t, "a", "b", "c")
	a, b, c := n["a"], n["b"], n["c"]
	a.ari.Emit("PJSIP/1001", InUse)
	waitStasis(t, b, "Stasis:1001", InUse)
	a.stop() // a's states stay in the store, its heartbeat lapses
	waitStasis(t, b, "Stasis:1001", Unavailable)
	// What c's resnapshot after the resync finds.
	c.ami.set([2]string{"PJSIP/2000", NotInUse})
	store.resync() // b re-reads everything while a is dead: a's states are hidden
	c.ari.Emit("PJSIP/2000", NotInUse)
	waitStasis(t, b, "Stasis:2000", NotInUse)                                       // the feed is in order: b has reloaded
	if err := store.Heartbeat(context.Background(), "a", time.Minute); err != nil { // a is back
		t.Fatal(err)
	}
	waitStasis(t, b, "Stasis:1001", InUse)
}

// TestBurstKeepsTheLastStatePerDevice: a burst (published in parallel
// batches) ends with every device's last state on the other server.
func TestBurstKeepsTheLastStatePerDevice(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		_, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		cycle := []string{Ringing, InUse, OnHold, Busy, NotInUse, Unavailable}
		for round := range 5 {
			for d := range 200 {
				a.ari.Emit(fmt.Sprintf("PJSIP/%d", 3000+d), cycle[(round+d)%len(cycle)])
			}
		}
		for d := range 200 {
			waitStasis(t, b, fmt.Sprintf("Stasis:%d", 3000+d), cycle[(4+d)%len(cycle)])
		}
	})
}

// TestBadDeviceInBurstDoesNotStopOthers: a device the store refuses (a NUL
// in its name) fails alone, counted, even inside a burst stored in one
// batch call; the other devices of the burst arrive.
func TestBadDeviceInBurstDoesNotStopOthers(t *testing.T) {
	forStores(t, func(t *testing.T, open func() Store) {
		store, n := clusterOn(t, open, "a", "b")
		a, b := n["a"], n["b"]
		var devs [][2]string
		for d := range 100 {
			devs = append(devs, [2]string{fmt.Sprintf("PJSIP/%d", 4000+d), InUse})
		}
		// A phone that only the AMI listing has: once it is stored, the
		// snapshot the failure triggers is done.
		const listed = "PJSIP/4999"
		devs = append(devs, [2]string{listed, NotInUse})
		// The start-up snapshot found no devices; the one the failure
		// triggers finds these.
		eventually(t, "start-up snapshot", func() bool { return a.ami.actionCalls() >= 1 })
		a.ami.set(devs...)
		for d := range 100 {
			a.ari.Emit(fmt.Sprintf("PJSIP/%d", 4000+d), InUse)
			if d == 50 {
				a.ari.Emit("PJSIP/bad\x00name", InUse)
			}
		}
		for d := range 100 {
			waitStasis(t, b, fmt.Sprintf("Stasis:%d", 4000+d), InUse)
		}
		if _, validates := store.(BatchDevices); !validates {
			return // the in-memory fake stores any name
		}
		if got := testutil.ToFloat64(a.mon.met.errors.WithLabelValues(causeStorePut)); got < 1 {
			t.Fatalf("store_publish errors counted %v, want >= 1", got)
		}
		// A batch with the bad state stores the others itself, not only
		// through the snapshot the failure triggers. How the burst above
		// was cut into batches depends on timing, so one batch is given
		// here directly, after that snapshot (which replaces the server's
		// states with the AMI listing, without these phones).
		eventually(t, "the snapshot after the failure", func() bool { return storedNow(store, "a", listed) == NotInUse })
		batch := []change{{device: "PJSIP/4990", state: Busy, src: time.Now()},
			{device: "PJSIP/bad\x00name", state: InUse, src: time.Now()},
			{device: "PJSIP/4991", state: Busy, src: time.Now()}}
		if a.mon.publishBatch(context.Background(), batch, map[string]string{}) {
			t.Fatal("publishBatch reported success for a batch with a refused state")
		}
		for _, d := range []string{"PJSIP/4990", "PJSIP/4991"} {
			if st := stored(t, store, "a", d); st != Busy {
				t.Fatalf("%s stored as %q after a batch with a refused state, want %s", d, st, Busy)
			}
		}
	})
}
