package ari

import (
	"context"
	"strings"
	"testing"
	"time"

	ariv6 "github.com/CyCoreSystems/ari/v6"
	"github.com/CyCoreSystems/ari/v6/client/native"
)

// TestCyCoreClient drives the handler with the client doorman uses.
func TestCyCoreClient(t *testing.T) {
	s := newTestServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := native.ConnectWithContext(ctx, &native.Options{
		Application:  "doorman",
		URL:          s.URL + "/ari",
		WebsocketURL: "ws" + strings.TrimPrefix(s.URL, "http") + "/ari/events",
		Username:     "aim",
		Password:     "aimsecret",
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	// No cl.Close: it races with the client's own listener (ari/v6 trap);
	// cancelling the context ends the connection.

	appKey := ariv6.NewKey(ariv6.ApplicationKey, cl.ApplicationName())
	if err := cl.Application().Subscribe(appKey, "deviceState:"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sub := cl.Bus().Subscribe(nil, ariv6.Events.DeviceStateChanged)
	defer sub.Cancel()

	stasis := ariv6.NewKey(ariv6.DeviceStateKey, "Stasis:1001")
	if err := cl.DeviceState().Update(stasis, "INUSE"); err != nil {
		t.Fatalf("update: %v", err)
	}
	select {
	case ev := <-sub.Events():
		dsc, ok := ev.(*ariv6.DeviceStateChanged)
		if !ok {
			t.Fatalf("event %T", ev)
		}
		if dsc.DeviceState.Name != "Stasis:1001" || dsc.DeviceState.State != "INUSE" || dsc.GetNode() != "02:00:00:00:00:0a" {
			t.Fatalf("echo %+v node %q", dsc.DeviceState, dsc.GetNode())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DeviceStateChanged echo")
	}

	data, err := cl.DeviceState().Data(stasis)
	if err != nil || data.State != "INUSE" {
		t.Fatalf("data: %+v %v", data, err)
	}
	// A real device must be escaped; Data does not escape the '/'.
	s.fake.setDevice("PJSIP/1001", "NOT_INUSE")
	data, err = cl.DeviceState().Data(ariv6.NewKey(ariv6.DeviceStateKey, "PJSIP%2F1001"))
	if err != nil || data.State != "NOT_INUSE" {
		t.Fatalf("escaped data: %+v %v", data, err)
	}
	if _, err := cl.DeviceState().Data(ariv6.NewKey(ariv6.DeviceStateKey, "PJSIP/1001")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unescaped data: %v, want a 404", err)
	}
	keys, err := cl.DeviceState().List(nil)
	if err != nil || len(keys) != 1 || keys[0].ID != "Stasis:1001" {
		t.Fatalf("list: %v %v", keys, err)
	}

	for _, tc := range []struct {
		name, state string
		code        int
	}{
		{"Stasis:1001", "BOGUS", 500},
		{"Stasis:1001", "UNKNOWN", 500},
		{"PJSIP:1001", "INUSE", 409},
		{"PJSIP/1001", "INUSE", 404},
	} {
		err := cl.DeviceState().Update(ariv6.NewKey(ariv6.DeviceStateKey, tc.name), tc.state)
		if got := native.CodeFromError(err); got != tc.code {
			t.Errorf("update %s=%s: code %d (%v), want %d", tc.name, tc.state, got, err, tc.code)
		}
	}

	eps, err := cl.Endpoint().List(nil)
	if err != nil || len(eps) != 2 {
		t.Fatalf("endpoints: %v %v", eps, err)
	}
	s.fake.setEndpointState("1001", "online")
	ep, err := cl.Endpoint().Data(ariv6.NewEndpointKey("PJSIP", "1001"))
	if err != nil || ep.State != "online" || ep.Resource != "1001" || ep.Technology != "PJSIP" {
		t.Fatalf("endpoint data: %+v %v", ep, err)
	}
	if _, err := cl.Endpoint().Data(ariv6.NewEndpointKey("PJSIP", "9999")); err == nil {
		t.Fatal("unknown endpoint: no error")
	}
	byTech, err := cl.Endpoint().ListByTech("PJSIP", nil)
	if err != nil || len(byTech) != 2 {
		t.Fatalf("by tech: %v %v", byTech, err)
	}

	if err := cl.DeviceState().Delete(stasis); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if data, err := cl.DeviceState().Data(stasis); err != nil || data.State != "UNKNOWN" {
		t.Fatalf("after delete: %+v %v", data, err)
	}
	if err := cl.Application().Unsubscribe(appKey, "deviceState:"); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if err := cl.Application().Subscribe(appKey, "nosuch:thing"); err == nil {
		t.Fatal("bad scheme accepted")
	}
	info, err := cl.Asterisk().Info(nil)
	if err != nil || info.SystemInfo.EntityID != "02:00:00:00:00:0a" || info.ConfigInfo.Name != "aim-a" {
		t.Fatalf("info: %+v %v", info, err)
	}
}
