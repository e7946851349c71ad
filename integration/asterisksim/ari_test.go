package asterisksim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestARIThroughSim checks the ARI server mounted on HTTPAddr against the
// core: REST device states, websocket events for a registration, and a
// restart dropping the websocket.
func TestARIThroughSim(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	s := startSim(t, cfg)
	if s.HTTPAddr() == "" {
		t.Fatal("HTTPAddr not served")
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("aim:aimsecret"))
	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+s.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", auth)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := do("GET", "/ari/asterisk/info"); code != 200 || !strings.Contains(body, `"entity_id":"02:00:00:00:00:0a"`) {
		t.Errorf("asterisk/info: %d %s", code, body)
	}
	h := http.Header{}
	h.Set("Authorization", auth)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr()+"/ari/events?app=doorman&subscribeAll=true", h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ami := listenerLogin(t, s)
	if code, _ := do("PUT", "/ari/deviceStates/Stasis:1001?deviceState=INUSE"); code != 204 {
		t.Errorf("PUT Stasis:1001: %d", code)
	}
	ami.waitContains(t, "Device: Stasis:1001\r\nState: INUSE\r\n", 1)
	ami.waitContains(t, "Hint: PJSIP/1001&Stasis:1001\r\nStatus: 1\r\nStatusText: InUse\r\n", 1)
	p := phone(t, s, "1001", "pw1001", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	seen := map[string]bool{}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !(seen["DeviceStateChanged PJSIP/1001 NOT_INUSE"] && seen["ContactStatusChange"] && seen["PeerStatusChange"]) {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("websocket: %v (seen %v)", err, seen)
		}
		var ev struct {
			Type        string                       `json:"type"`
			DeviceState struct{ Name, State string } `json:"device_state"`
		}
		_ = json.Unmarshal(msg, &ev)
		key := ev.Type
		if ev.Type == "DeviceStateChanged" {
			key += " " + ev.DeviceState.Name + " " + ev.DeviceState.State
		}
		seen[key] = true
	}
	if code, body := do("GET", "/ari/deviceStates/PJSIP%2F1001"); code != 200 || !strings.Contains(body, `"NOT_INUSE"`) {
		t.Errorf("GET PJSIP/1001: %d %s", code, body)
	}
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break // dropped by the restart
		}
	}
	if code, body := do("GET", "/ari/deviceStates/Stasis:1001"); code != 200 || !strings.Contains(body, `"INUSE"`) {
		t.Errorf("Stasis:1001 after restart: %d %s", code, body)
	}
}
