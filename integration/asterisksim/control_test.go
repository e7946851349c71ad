package asterisksim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestControlAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.ControlAddr = "127.0.0.1:0"
	s := startSim(t, cfg)
	base := "http://" + s.ControlAddr() + "/control/"
	post := func(path, body string) *http.Response {
		t.Helper()
		r, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := post("devicestate", `{"device":"PJSIP/1001","state":"RINGING"}`); r.StatusCode != http.StatusNoContent {
		t.Errorf("devicestate: %d", r.StatusCode)
	}
	if st := s.DeviceState("PJSIP/1001"); st != "RINGING" {
		t.Errorf("PJSIP/1001 = %s", st)
	}
	if r := post("devicestate", `{"device":"PJSIP/1001","state":"BOGUS"}`); r.StatusCode != http.StatusBadRequest {
		t.Errorf("bad state: %d", r.StatusCode)
	}
	if r := post("devicestate", `{"nope":1}`); r.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: %d", r.StatusCode)
	}
	p := phone(t, s, "1002", "pw1002", "127.0.0.1:0", "udp")
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register: %v %v", r, err)
	}
	r, err := http.Get(base + "contacts")
	if err != nil {
		t.Fatal(err)
	}
	var cs []Contact
	err = json.NewDecoder(r.Body).Decode(&cs)
	r.Body.Close()
	if err != nil || len(cs) != 1 || cs[0].AOR != "1002" || cs[0].RegServer != "aim-a" || cs[0].URI != p.ContactURI() {
		t.Errorf("contacts = %+v, %v", cs, err)
	}
	if r := post("restart", ``); r.StatusCode != http.StatusNoContent {
		t.Errorf("restart: %d", r.StatusCode)
	}
	if len(s.Contacts()) != 0 {
		t.Error("contacts survived the restart")
	}
	if r := post("agi", `{"addr":"127.0.0.1:1","script":"dialLocal"}`); r.StatusCode != http.StatusNotImplemented && r.StatusCode != http.StatusBadGateway {
		t.Errorf("agi: %d", r.StatusCode)
	}
}
