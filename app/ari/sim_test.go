package ari_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	simari "github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// newSimBackend is a tiny simulated core for the simulator's ARI handler,
// with one phone, PJSIP/1001.
func newSimBackend() *simari.Core {
	t := time.Date(2026, 11, 25, 11, 26, 23, 0, time.UTC)
	c := simari.NewCore(simari.Info{SystemName: "aim-a", EntityID: "02:00:00:00:00:0a", Version: "GIT-22-69535d4837", Started: t, Reloaded: t},
		[]simari.Endpoint{{Technology: "PJSIP", Resource: "1001", State: "offline"}})
	c.Raise("PJSIP/1001", "UNAVAILABLE") // no subscriber yet: only sets it
	return c
}

// TestNativeAgainstSimulator drives ari.NewNative against the simulator's
// ARI handler (integration/asterisksim/ari) over real HTTP and websocket.
func TestNativeAgainstSimulator(t *testing.T) {
	be := newSimBackend()
	users := map[string]string{user: pass}
	var cur atomic.Pointer[simari.Handler]
	cur.Store(simari.New(be, users, nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cur.Load().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	n, logs := startNativeURL(t, srv.URL+"/ari", nil)
	waitSignal(t, n.Connected(), "connected")
	if st := n.Status(); st.Node.ID != "02:00:00:00:00:0a" || st.Node.Name != "aim-a" {
		t.Fatalf("node %+v", st.Node)
	}
	ctx := context.Background()

	// The explicit deviceState: subscription is what brings real devices in.
	be.Raise("PJSIP/1001", "NOT_INUSE")
	if ev := nextEvent(t, n); ev.Device != "PJSIP/1001" || ev.State != "NOT_INUSE" || ev.Node != "02:00:00:00:00:0a" || ev.Time.IsZero() {
		t.Fatalf("event %+v", ev)
	}
	if st, err := n.DeviceState(ctx, "PJSIP/1001"); err != nil || st != "NOT_INUSE" {
		t.Fatalf("DeviceState(PJSIP/1001) = %q, %v", st, err)
	}
	if err := n.SetStasisState(ctx, "Stasis:1001", "RINGING"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, n); ev.Device != "Stasis:1001" || ev.State != "RINGING" {
		t.Fatalf("echo %+v", ev)
	}
	all, err := n.StasisStates(ctx)
	if err != nil || all["Stasis:1001"] != "RINGING" || len(all) != 1 {
		t.Fatalf("StasisStates = %v, %v", all, err)
	}

	// Asterisk restarts: websockets drop, the new one has no subscriptions
	// (a fresh handler), astdb replays a stale value. Device events arrive
	// again only if the client re-made its deviceState: subscription.
	old := cur.Load()
	cur.Store(simari.New(be, users, nil))
	old.Close()
	be.Seed(map[string]string{"Stasis:1001": "BUSY"})
	waitSignal(t, n.Connected(), "reconnected")
	be.Raise("PJSIP/1001", "INUSE")
	if ev := nextEvent(t, n); ev.Device != "PJSIP/1001" || ev.State != "INUSE" {
		t.Fatalf("event after reconnect %+v", ev)
	}
	if all, _ := n.StasisStates(ctx); all["Stasis:1001"] != "BUSY" {
		t.Fatalf("stale state not listed: %v", all)
	}
	if !strings.Contains(logs.String(), "ari: connected") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestNativeAgainstSimulatorWrongPassword(t *testing.T) {
	srv := httptest.NewServer(simari.NewHandler(newSimBackend(), map[string]string{user: pass}, nil))
	t.Cleanup(srv.Close)
	n, logs := startNativeURL(t, srv.URL+"/ari", func(c *ari.NativeConfig) { c.Password = "bad-pw-123" })
	eventually(t, "401 in status", func() bool { return n.Status().Err == "ARI: 401 unauthorized" })
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, ari.ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(logs.String(), "bad-pw-123") {
		t.Fatal("password logged")
	}
}
