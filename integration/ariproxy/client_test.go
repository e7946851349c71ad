package ariproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/ariproxy"
)

func newClient(t testing.TB, cfg ariproxy.Config) *ariproxy.Client {
	t.Helper()
	cfg.RetryInterval = 50 * time.Millisecond
	c, err := ariproxy.New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSignal waits for a Connected signal.
func waitSignal(t testing.TB, c ari.Client, what string) {
	t.Helper()
	select {
	case <-c.Connected():
	case <-time.After(20 * time.Second):
		t.Fatalf("no Connected signal: %s (status %+v)", what, c.Status())
	}
}

func drainSignals(c ari.Client) {
	for {
		select {
		case <-c.Connected():
		default:
			return
		}
	}
}

// nextEvent returns the next event of device in state, skipping others
// (such as the repair events of a fresh connection).
func nextEvent(t testing.TB, c ari.Client, device, state string) ari.DeviceStateEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.Events():
			if ev.Device == device && ev.State == state {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event for %s", device)
		}
	}
}

func TestClientBoundToOneNode(t *testing.T) {
	ctx := context.Background()
	nats := startNATS(t)
	a := startServer(t, nats.URL, "aim-a", "02:00:00:00:00:0a", 3)
	b := startServer(t, nats.URL, "aim-b", "02:00:00:00:00:0b", 3)

	ca := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity})
	cb := newClient(t, ariproxy.Config{NATSURL: nats.URL, SystemName: "aim-b"}) // found by systemname
	waitSignal(t, ca, "a")
	waitSignal(t, cb, "b")
	if st := ca.Status(); !st.Connected || st.Node != (ari.Node{ID: a.entity, Name: "aim-a"}) {
		t.Fatalf("a status: %+v", st)
	}
	if st := cb.Status(); st.Node != (ari.Node{ID: b.entity, Name: "aim-b"}) || cb.Node() != b.entity {
		t.Fatalf("b status: %+v", st)
	}

	// Commands go to the intended node only.
	if err := ca.SetStasisState(ctx, "Stasis:1001", "RINGING"); err != nil {
		t.Fatal(err)
	}
	if got := a.stasis("Stasis:1001"); got != "RINGING" {
		t.Fatalf("a Stasis:1001 = %q", got)
	}
	if got := b.stasis("Stasis:1001"); got != "" {
		t.Fatalf("write leaked to b: Stasis:1001 = %q", got)
	}
	if err := cb.SetStasisState(ctx, "Stasis:2002", "BUSY"); err != nil {
		t.Fatal(err)
	}
	got, err := cb.StasisStates(ctx)
	if err != nil || len(got) != 1 || got["Stasis:2002"] != "BUSY" {
		t.Fatalf("b StasisStates = %v, %v", got, err)
	}
	got, err = ca.StasisStates(ctx)
	if err != nil || len(got) != 1 || got["Stasis:1001"] != "RINGING" {
		t.Fatalf("a StasisStates = %v, %v", got, err)
	}

	// Reads of real devices: the '/' of PJSIP/1001 must reach Asterisk escaped.
	if err := a.sim.SetDeviceState("PJSIP/1002", "INUSE"); err != nil {
		t.Fatal(err)
	}
	if st, err := ca.DeviceState(ctx, "PJSIP/1002"); err != nil || st != "INUSE" {
		t.Fatalf("a PJSIP/1002 = %q, %v", st, err)
	}
	if st, err := cb.DeviceState(ctx, "PJSIP/1002"); err != nil || st != "NOT_INUSE" && st != "UNAVAILABLE" {
		t.Fatalf("b PJSIP/1002 = %q, %v (must be b's own device)", st, err)
	}

	// Events keep their node identity, and each client sees its node only.
	if err := b.sim.SetDeviceState("PJSIP/1003", "RINGING"); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, cb, "PJSIP/1003", "RINGING")
	if ev.Node != b.entity || ev.State != "RINGING" || ev.Time.IsZero() || ev.Received.IsZero() {
		t.Fatalf("event: %+v", ev)
	}
	if err := a.sim.SetDeviceState("PJSIP/1003", "BUSY"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ca, "PJSIP/1003", "BUSY"); ev.Node != a.entity || ev.State != "BUSY" {
		t.Fatalf("a event: %+v", ev)
	}
	for len(cb.Events()) > 0 {
		if ev := <-cb.Events(); ev.Node != b.entity || ev.State == "BUSY" {
			t.Fatalf("b got a's event: %+v", ev)
		}
	}

	// Bad writes fail before they leave.
	if err := ca.SetStasisState(ctx, "PJSIP/1001", "BUSY"); !errors.Is(err, ari.ErrNotStasis) {
		t.Fatalf("write to PJSIP/1001: %v", err)
	}
	if err := ca.SetStasisState(ctx, "Stasis:1001", "UNKNOWN"); !errors.Is(err, ari.ErrBadState) {
		t.Fatalf("write UNKNOWN: %v", err)
	}

	nodes, err := ariproxy.Nodes(ctx, nats.URL, app, 0)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("Nodes = %v, %v", nodes, err)
	}
}
