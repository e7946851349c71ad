package statetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func testHeartbeat(t *testing.T, open Open) {
	s, other, c := open(t), open(t), ctx(t)
	before := time.Now().Add(-time.Second)
	if err := s.Heartbeat(c, "pbx1", time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := s.Heartbeat(c, "pbx2", 300*time.Millisecond); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	live, err := other.Servers(c)
	if err != nil {
		t.Fatalf("Servers: %v", err)
	}
	if len(live) != 2 || live["pbx1"].Before(before) || live["pbx1"].After(time.Now().Add(time.Second)) {
		t.Fatalf("Servers = %v; want pbx1 and pbx2 beating now", live)
	}
	eventually(t, "pbx2 to die", func() bool {
		live, err := other.Servers(c)
		if err != nil {
			t.Fatalf("Servers: %v", err)
		}
		_, alive := live["pbx2"]
		return !alive && len(live) == 1
	})
	if err := s.Heartbeat(c, "pbx2", time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if live, err := other.Servers(c); err != nil || len(live) != 2 {
		t.Fatalf("Servers after pbx2 came back = %v, %v", live, err)
	}
	if err := s.Heartbeat(c, "", time.Minute); err == nil {
		t.Fatalf("Heartbeat of an unnamed server: no error")
	}
	if err := s.Heartbeat(c, "pbx3", 0); err == nil {
		t.Fatalf("Heartbeat with zero ttl: no error")
	}
}

func dev(server, device, st string) state.DeviceState {
	return state.DeviceState{Server: server, Device: device, State: st, Updated: time.Now().Round(time.Millisecond)}
}

func deviceMap(t *testing.T, s state.Store) map[string]state.DeviceState {
	t.Helper()
	all, err := s.DeviceStates(ctx(t))
	if err != nil {
		t.Fatalf("DeviceStates: %v", err)
	}
	m := make(map[string]state.DeviceState, len(all))
	for _, d := range all {
		k := d.Server + " " + d.Device
		if _, dup := m[k]; dup {
			t.Fatalf("DeviceStates lists %s twice", k)
		}
		m[k] = d
	}
	return m
}

func expectDevice(t *testing.T, ch <-chan state.DeviceEvent, kind state.EventKind, server, device, st string) {
	t.Helper()
	e := recv(t, ch, fmt.Sprintf("event for %s %s", server, device))
	if e.Kind != kind || e.State.Server != server || e.State.Device != device || (kind == state.Added && e.State.State != st) {
		t.Fatalf("got %+v; want kind %d %s %s %s", e, kind, server, device, st)
	}
}

func testDevicePutWatch(t *testing.T, open Open) {
	s1, s2, c := open(t), open(t), ctx(t)
	for _, srv := range []string{"a", "b"} {
		if err := s1.Heartbeat(c, srv, time.Minute); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
	}
	w, err := s2.WatchDeviceStates(c)
	if err != nil {
		t.Fatalf("WatchDeviceStates: %v", err)
	}
	own, err := s1.WatchDeviceStates(c)
	if err != nil {
		t.Fatalf("WatchDeviceStates: %v", err)
	}
	d := dev("a", "PJSIP/1001", "INUSE")
	if err := s1.PutDeviceState(c, d); err != nil {
		t.Fatalf("PutDeviceState: %v", err)
	}
	e := recv(t, w, "device change")
	if e.Kind != state.Added || e.State != d && !(e.State.Server == d.Server && e.State.Device == d.Device &&
		e.State.State == d.State && e.State.Updated.Equal(d.Updated)) {
		t.Fatalf("got %+v; want Added %+v", e, d)
	}
	expectDevice(t, own, state.Added, "a", "PJSIP/1001", "INUSE")
	// The same state again is no change: nothing is published, so the next
	// event is the one after it.
	if err := s2.PutDeviceState(c, dev("a", "PJSIP/1001", "INUSE")); err != nil {
		t.Fatalf("PutDeviceState: %v", err)
	}
	if err := s2.PutDeviceState(c, dev("b", "PJSIP/1001", "RINGING")); err != nil {
		t.Fatalf("PutDeviceState: %v", err)
	}
	expectDevice(t, w, state.Added, "b", "PJSIP/1001", "RINGING")
	expectDevice(t, own, state.Added, "b", "PJSIP/1001", "RINGING")
	if err := s1.PutDeviceState(c, dev("a", "PJSIP/1001", "NOT_INUSE")); err != nil {
		t.Fatalf("PutDeviceState: %v", err)
	}
	expectDevice(t, w, state.Added, "a", "PJSIP/1001", "NOT_INUSE")
	m := deviceMap(t, s2)
	if len(m) != 2 || m["a PJSIP/1001"].State != "NOT_INUSE" || m["b PJSIP/1001"].State != "RINGING" {
		t.Fatalf("DeviceStates = %v", m)
	}
	if err := s1.PutDeviceState(c, state.DeviceState{Server: "a", State: "INUSE"}); err == nil {
		t.Fatalf("PutDeviceState without device: no error")
	}
	if err := s1.PutDeviceState(c, state.DeviceState{Device: "PJSIP/1", State: "INUSE"}); err == nil {
		t.Fatalf("PutDeviceState without server: no error")
	}
}

func testDeviceReplace(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	if err := s.Heartbeat(c, "a", time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	for _, d := range []state.DeviceState{dev("a", "PJSIP/1", "INUSE"), dev("a", "PJSIP/2", "INUSE"), dev("a", "PJSIP/3", "RINGING")} {
		if err := s.PutDeviceState(c, d); err != nil {
			t.Fatalf("PutDeviceState: %v", err)
		}
	}
	w, err := open(t).WatchDeviceStates(c)
	if err != nil {
		t.Fatalf("WatchDeviceStates: %v", err)
	}
	// 1 unchanged, 2 changed, 3 gone, 4 new.
	err = s.ReplaceDeviceStates(c, "a", []state.DeviceState{
		{Device: "PJSIP/1", State: "INUSE"}, {Device: "PJSIP/2", State: "NOT_INUSE"}, {Device: "PJSIP/4", State: "BUSY"}})
	if err != nil {
		t.Fatalf("ReplaceDeviceStates: %v", err)
	}
	got := map[string]state.DeviceEvent{}
	for range 3 {
		e := recv(t, w, "replace events")
		got[e.State.Device] = e
	}
	if got["PJSIP/2"].Kind != state.Added || got["PJSIP/2"].State.State != "NOT_INUSE" ||
		got["PJSIP/4"].Kind != state.Added || got["PJSIP/4"].State.State != "BUSY" ||
		got["PJSIP/3"].Kind != state.Removed || got["PJSIP/3"].State.Server != "a" {
		t.Fatalf("replace events = %+v; want 2 and 4 Added, 3 Removed", got)
	}
	if err := s.PutDeviceState(c, dev("a", "PJSIP/9", "INUSE")); err != nil {
		t.Fatalf("PutDeviceState: %v", err)
	}
	expectDevice(t, w, state.Added, "a", "PJSIP/9", "INUSE") // and not PJSIP/1
	m := deviceMap(t, s)
	if len(m) != 4 || m["a PJSIP/1"].State != "INUSE" || m["a PJSIP/2"].State != "NOT_INUSE" ||
		m["a PJSIP/4"].State != "BUSY" || m["a PJSIP/9"].State != "INUSE" {
		t.Fatalf("DeviceStates after replace = %v", m)
	}
	if m["a PJSIP/1"].Server != "a" {
		t.Fatalf("replaced state lost its server: %+v", m["a PJSIP/1"])
	}
	if err := s.ReplaceDeviceStates(c, "a", nil); err != nil {
		t.Fatalf("ReplaceDeviceStates empty: %v", err)
	}
	if m := deviceMap(t, s); len(m) != 0 {
		t.Fatalf("DeviceStates after empty replace = %v", m)
	}
}

func testDeviceDeadServer(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	if err := s.Heartbeat(c, "alive", time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := s.Heartbeat(c, "dying", 300*time.Millisecond); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	for _, d := range []state.DeviceState{dev("alive", "PJSIP/1", "INUSE"), dev("dying", "PJSIP/2", "INUSE"), dev("never", "PJSIP/3", "INUSE")} {
		if err := s.PutDeviceState(c, d); err != nil {
			t.Fatalf("PutDeviceState: %v", err)
		}
	}
	m := deviceMap(t, s)
	if len(m) != 2 || m["alive PJSIP/1"].State != "INUSE" || m["dying PJSIP/2"].State != "INUSE" {
		t.Fatalf("DeviceStates = %v; want alive's and dying's, not never's (no heartbeat)", m)
	}
	eventually(t, "dead server's states to vanish", func() bool {
		m := deviceMap(t, s)
		_, there := m["dying PJSIP/2"]
		return !there && len(m) == 1
	})
	if err := s.Heartbeat(c, "dying", time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if m := deviceMap(t, s); len(m) != 2 {
		t.Fatalf("states of a server beating again = %v; want them back", m)
	}
}
