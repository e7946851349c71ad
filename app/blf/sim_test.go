package blf

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	simari "github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// simAsterisk is a tiny simulated core (simari.Core) behind the
// simulator's real ARI handler, served over HTTP and websocket.
type simAsterisk struct {
	*simari.Core
	h   atomic.Pointer[simari.Handler]
	srv *httptest.Server
}

func newSimAsterisk(t testing.TB, id string) *simAsterisk {
	start := time.Date(2026, 11, 25, 11, 26, 23, 0, time.UTC)
	a := &simAsterisk{Core: simari.NewCore(simari.Info{SystemName: id, EntityID: id, Version: "GIT-22-69535d4837",
		Started: start, Reloaded: start}, nil)}
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

// asterisk interface (tests' handle).
func (a *simAsterisk) raise(device, state string)    { a.Raise(device, state) }
func (a *simAsterisk) stasis(name string) string     { return a.Stasis(name) }
func (a *simAsterisk) seed(states map[string]string) { a.Seed(states) }

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
