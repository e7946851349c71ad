package blf

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/aritest"
)

const ariUser, ariPass = "doorman", "ari-secret"

// dialHTTP gives a node its own ARI test server and the native client.
func dialHTTP(t testing.TB) func(*node) {
	return func(n *node) {
		n.srv = aritest.NewServer(ariUser, ariPass)
		t.Cleanup(n.srv.Close)
		cl, err := ari.NewNative(context.Background(), ari.NativeConfig{URL: n.srv.URL(), Username: ariUser, Password: ariPass,
			BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}, testLog(t).With("server", n.name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		n.client = cl
	}
}

// asterisk is the test's handle on a node's Asterisk, whatever serves ARI.
type asterisk interface {
	raise(device, state string)    // a device changes state
	stasis(name string) string     // a Stasis: state as Asterisk has it
	seed(states map[string]string) // Stasis: states already in astdb (no events)
}

type fakeAsterisk struct{ f *aritest.Fake }

func (a fakeAsterisk) raise(device, state string) { a.f.Emit(device, state) }
func (a fakeAsterisk) stasis(name string) string  { return a.f.Stasis(name) }
func (a fakeAsterisk) seed(states map[string]string) {
	for k, v := range states {
		a.f.SetStasisState(context.Background(), k, v)
	}
}

type serverAsterisk struct{ s *aritest.Server }

func (a serverAsterisk) raise(device, state string) { a.s.Send(device, state) }
func (a serverAsterisk) stasis(name string) string  { return a.s.Stasis(name) }
func (a serverAsterisk) seed(states map[string]string) {
	for k, v := range states {
		a.s.SetStasis(k, v)
	}
}

// emit raises a device state change on the node's Asterisk.
func (n *node) emit(device, state string) { n.ast().raise(device, state) }

func (n *node) stasis(name string) string { return n.ast().stasis(name) }

func (n *node) ast() asterisk {
	switch {
	case n.asterisk != nil:
		return n.asterisk
	case n.srv != nil:
		return serverAsterisk{n.srv}
	default:
		return fakeAsterisk{n.ari}
	}
}

func waitHTTPStasis(t *testing.T, n *node, name, want string) {
	t.Helper()
	eventually(t, n.name+": "+name+" = "+want, func() bool { return n.stasis(name) == want })
}

// TestOverHTTP runs the fan-out through ari.NewNative against ARI test
// servers over real HTTP and websockets.
func TestOverHTTP(t *testing.T) {
	store := newMemStore()
	a := startNode(t, store, "a", testConfig(), nodeOpts{dial: dialHTTP(t)})
	b := startNode(t, store, "b", testConfig(), nodeOpts{dial: dialHTTP(t)})
	eventually(t, "both connected", func() bool { return a.mon.Health() == nil && b.mon.Health() == nil })

	a.emit("PJSIP/1001", Ringing)
	waitHTTPStasis(t, b, "Stasis:1001", Ringing)
	a.emit("PJSIP/1001", InUse)
	waitHTTPStasis(t, b, "Stasis:1001", InUse)
	waitHTTPStasis(t, a, "Stasis:1001", Unavailable)
	if !b.srv.Seen("PUT /deviceStates/Stasis:1001?deviceState=INUSE") {
		t.Fatal("no PUT seen")
	}

	// b's Asterisk restarts: astdb replays stale states, the websocket drops.
	b.srv.SetStasis("Stasis:1001", NotInUse)
	b.srv.SetStasis("Stasis:4711", Busy)
	b.srv.DropAll()
	waitHTTPStasis(t, b, "Stasis:1001", InUse)
	waitHTTPStasis(t, b, "Stasis:4711", Unavailable)
	if subs := b.srv.Subscriptions(); len(subs) < 2 {
		t.Fatalf("subscription not re-made after reconnect: %q", subs)
	}

	// A 500 for one name does not hold the others back.
	b.srv.SetPutError("Stasis:1002", 500)
	a.emit("PJSIP/1002", Busy)
	a.emit("PJSIP/1003", Ringing)
	waitHTTPStasis(t, b, "Stasis:1003", Ringing)
	b.srv.SetPutError("Stasis:1002", 0)
	waitHTTPStasis(t, b, "Stasis:1002", Busy)
}

func TestOverHTTPWrongPasswordShowsInHealth(t *testing.T) {
	store := newMemStore()
	n := startNode(t, store, "a", testConfig(), nodeOpts{dial: func(n *node) {
		n.srv = aritest.NewServer(ariUser, ariPass)
		t.Cleanup(n.srv.Close)
		cl, err := ari.NewNative(context.Background(), ari.NativeConfig{URL: n.srv.URL(), Username: ariUser, Password: "nope",
			BackoffMin: 10 * time.Millisecond}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		n.client = cl
	}})
	eventually(t, "401 in health", func() bool {
		err := n.mon.Health()
		return err != nil && strings.Contains(err.Error(), "ARI: 401 unauthorized")
	})
}
