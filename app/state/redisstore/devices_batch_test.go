package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
)

// TestPutDeviceStates: a batch stores every state, publishes only the
// changed ones, in order, and is refused whole when one state is invalid.
func TestPutDeviceStates(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "t:" + t.Name() + ":"}
	w, r := open(t, cfg), open(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, srv := range []string{"a", "b"} {
		if err := w.Heartbeat(ctx, srv, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	feed, err := r.WatchDeviceStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PutDeviceState(ctx, state.DeviceState{Server: "a", Device: "PJSIP/1", State: "INUSE"}); err != nil {
		t.Fatal(err)
	}
	next := func() state.DeviceState {
		t.Helper()
		select {
		case ev := <-feed:
			return ev.State
		case <-ctx.Done():
			t.Fatal("no feed event")
			return state.DeviceState{}
		}
	}
	if d := next(); d.Device != "PJSIP/1" {
		t.Fatalf("first event %+v", d)
	}

	// More than one script call's worth, across two servers; PJSIP/1 is
	// unchanged and must not be published again.
	batch := []state.DeviceState{{Server: "a", Device: "PJSIP/1", State: "INUSE"}}
	want := map[string]string{"a PJSIP/1": "INUSE"}
	var order []string
	for i := range 600 {
		srv := []string{"a", "b"}[i%2]
		d := state.DeviceState{Server: srv, Device: "PJSIP/" + strconv.Itoa(i), State: "RINGING"}
		batch = append(batch, d)
		want[srv+" "+d.Device] = d.State
		order = append(order, srv+" "+d.Device)
	}
	if err := w.PutDeviceStates(ctx, batch); err != nil {
		t.Fatalf("PutDeviceStates: %v", err)
	}
	for i, k := range order {
		d := next()
		if got := d.Server + " " + d.Device; got != k || d.State != "RINGING" {
			t.Fatalf("event %d = %s %s; want %s RINGING", i, got, d.State, k)
		}
	}
	all, err := r.DeviceStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("%d states stored; want %d", len(all), len(want))
	}
	for _, d := range all {
		if want[d.Server+" "+d.Device] != d.State {
			t.Errorf("stored %s %s = %s", d.Server, d.Device, d.State)
		}
	}

	bad := []state.DeviceState{{Server: "a", Device: "PJSIP/1", State: "NOT_INUSE"}, {Server: "a", Device: "", State: "INUSE"}}
	if err := w.PutDeviceStates(ctx, bad); err == nil {
		t.Fatal("a batch with an invalid state was accepted")
	}
	// Nothing of the refused batch was published: the next event is a
	// later change.
	if err := w.PutDeviceState(ctx, state.DeviceState{Server: "b", Device: "PJSIP/last", State: "BUSY"}); err != nil {
		t.Fatal(err)
	}
	if d := next(); d.Device != "PJSIP/last" {
		t.Fatalf("after a refused batch, event %+v; want PJSIP/last", d)
	}
}
