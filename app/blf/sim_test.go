package blf

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	simari "github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// simAsterisk is a tiny simulated core behind the simulator's real ARI
// handler (integration/asterisksim/ari), served over HTTP and websocket.
type simAsterisk struct {
	mu     sync.Mutex
	id     string
	states map[string]string // Stasis: states (astdb)
	devs   map[string]string
	subs   map[int]func(simari.Event)
	next   int

	h   atomic.Pointer[simari.Handler]
	srv *httptest.Server

	// applied, if set (benchmarks), sees each Stasis: state as the
	// simulated core stores it: where a change's clock stops.
	applied func(name, state string, at time.Time)
}

func newSimAsterisk(t testing.TB, id string) *simAsterisk {
	a := &simAsterisk{id: id, states: map[string]string{}, devs: map[string]string{}, subs: map[int]func(simari.Event){}}
	a.h.Store(simari.New(a, map[string]string{ariUser: ariPass}, nil))
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.h.Load().ServeHTTP(w, r) }))
	t.Cleanup(func() {
		a.h.Load().Close()
		a.srv.Close()
	})
	return a
}

// restart drops every websocket and serves a fresh handler (no
// subscriptions), as an Asterisk restart does; astdb states stay.
func (a *simAsterisk) restart() {
	old := a.h.Load()
	a.h.Store(simari.New(a, map[string]string{ariUser: ariPass}, nil))
	old.Close()
}

func (a *simAsterisk) Info() simari.Info {
	t := time.Date(2026, 11, 25, 11, 26, 23, 0, time.UTC)
	return simari.Info{SystemName: a.id, EntityID: a.id, Version: "GIT-22-69535d4837", Started: t, Reloaded: t}
}

func (a *simAsterisk) Endpoints() []simari.Endpoint { return []simari.Endpoint{} }

func (a *simAsterisk) DeviceState(name string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.states[name]; ok {
		return st
	}
	if strings.HasPrefix(name, ari.StasisPrefix) {
		return Unknown
	}
	if st, ok := a.devs[name]; ok {
		return st
	}
	return Invalid
}

func (a *simAsterisk) StasisStates() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]string, len(a.states))
	for k, v := range a.states {
		m[k] = v
	}
	return m
}

func (a *simAsterisk) SetStasisState(name, state string) error {
	a.mu.Lock()
	a.states[name] = state
	a.mu.Unlock()
	if a.applied != nil {
		a.applied(name, state, time.Now())
	}
	a.notify(name, state)
	return nil
}

func (a *simAsterisk) DeleteStasisState(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.states, name)
	return nil
}

func (a *simAsterisk) Subscribe(fn func(simari.Event)) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := a.next
	a.next++
	a.subs[id] = fn
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.subs, id)
	}
}

func (a *simAsterisk) notify(device, state string) {
	a.mu.Lock()
	subs := make([]func(simari.Event), 0, len(a.subs))
	for _, fn := range a.subs {
		subs = append(subs, fn)
	}
	a.mu.Unlock()
	ev := simari.Event{Kind: "DeviceStateChanged", Time: time.Now(), Device: device, State: state}
	for _, fn := range subs {
		fn(ev)
	}
}

// asterisk interface (tests' handle).
func (a *simAsterisk) raise(device, state string) {
	a.mu.Lock()
	a.devs[device] = state
	a.mu.Unlock()
	a.notify(device, state)
}

func (a *simAsterisk) stasis(name string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.states[name]
}

func (a *simAsterisk) seed(states map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range states {
		a.states[k] = v
	}
}

// dialSim gives a node a simulated Asterisk and ari.NewNative to it.
func dialSim(t testing.TB) func(*node) {
	return func(n *node) {
		sim := newSimAsterisk(t, "id-"+n.name)
		n.asterisk = sim
		cl, err := ari.NewNative(context.Background(), ari.NativeConfig{URL: sim.srv.URL + "/ari", Username: ariUser, Password: ariPass,
			BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}, testLog(t).With("server", n.name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		n.client = cl
	}
}

// TestOverSimulatorAndRedis is the most real path: the simulator's ARI
// over HTTP and websocket, and the Redis store.
func TestOverSimulatorAndRedis(t *testing.T) {
	open := redisOpener(t)
	a := startNode(t, open(), "a", testConfig(), nodeOpts{dial: dialSim(t)})
	b := startNode(t, open(), "b", testConfig(), nodeOpts{dial: dialSim(t)})
	c := startNode(t, open(), "c", testConfig(), nodeOpts{dial: dialSim(t)})
	eventually(t, "all connected", func() bool {
		return a.mon.Health() == nil && b.mon.Health() == nil && c.mon.Health() == nil
	})
	a.emit("PJSIP/1001", Ringing)
	waitHTTPStasis(t, b, "Stasis:1001", Ringing)
	a.emit("PJSIP/1001", InUse)
	b.emit("PJSIP/1001", Ringing)
	waitHTTPStasis(t, c, "Stasis:1001", RingInUse)
	waitHTTPStasis(t, a, "Stasis:1001", Ringing)
	waitHTTPStasis(t, b, "Stasis:1001", InUse)

	// c's Asterisk restarts with stale astdb values and a fresh ARI that
	// has forgotten the subscription.
	sim := c.asterisk.(*simAsterisk)
	sim.seed(map[string]string{"Stasis:1001": NotInUse, "Stasis:7777": Busy})
	sim.restart()
	waitHTTPStasis(t, c, "Stasis:1001", RingInUse)
	waitHTTPStasis(t, c, "Stasis:7777", Unavailable)
	a.emit("PJSIP/1001", NotInUse) // and events flow again
	waitHTTPStasis(t, c, "Stasis:1001", Ringing)
}
