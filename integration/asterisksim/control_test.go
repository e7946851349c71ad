package asterisksim

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	zagi "github.com/zaf/agi"
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

// fastAGIServer answers one dialLocal request per connection with
// SET VARIABLE dialString, like doorman's Extension Finder.
func fastAGIServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				s := zagi.New()
				if s.Init(bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))) != nil {
					return
				}
				_, _ = s.SetVariable("dialString", "PJSIP/"+s.Env["arg_1"]+"&script="+s.Env["network_script"])
			}(c)
		}
	}()
	return ln.Addr().String()
}

func TestStartAGI(t *testing.T) {
	cfg := testConfig(t)
	cfg.ControlAddr = "127.0.0.1:0"
	s := startSim(t, cfg)
	addr := fastAGIServer(t)
	res, err := s.StartAGI(context.Background(), AGIRequest{AppData: "agi://" + addr + "/dialLocal,1001,25,TtWw,1001", Exten: "7000"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "SUCCESS" || res.Variables["dialString"] != "PJSIP/1001&script=dialLocal" {
		t.Errorf("AGI result %+v", res)
	}
	// The control API, with the seed's form (no script: dialLocal is agi_arg_1).
	r, err := http.Post("http://"+s.ControlAddr()+"/control/agi", "application/json",
		strings.NewReader(`{"addr":"`+addr+`","args":["dialLocal","1001"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var got AGIResult
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil || r.StatusCode != 200 {
		t.Fatalf("control agi: %d %v", r.StatusCode, err)
	}
	if got.Status != "SUCCESS" || got.Variables["dialString"] != "PJSIP/dialLocal&script=" {
		t.Errorf("control AGI result %+v", got)
	}
	// Nothing listening: FAILURE with an error.
	if _, err := s.StartAGI(context.Background(), AGIRequest{Addr: "127.0.0.1:1", Script: "dialLocal"}); err == nil {
		t.Error("AGI to a closed port did not fail")
	}
}

// TestControlDeviceTrace: with TraceDevices, every stored device state
// (a raised PJSIP/ one and a Stasis: PUT) is listed once, with its time;
// without it the endpoint says it is off.
func TestControlDeviceTrace(t *testing.T) {
	trace := func(s *Sim) (int, []DeviceChange) {
		t.Helper()
		r, err := http.Post("http://"+s.ControlAddr()+"/control/devicetrace", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out []DeviceChange
		if r.StatusCode == http.StatusOK {
			if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return r.StatusCode, out
	}
	cfg := testConfig(t)
	cfg.ControlAddr = "127.0.0.1:0"
	if code, _ := trace(startSim(t, cfg)); code != http.StatusNotFound {
		t.Errorf("trace off: status %d, want 404", code)
	}
	cfg.TraceDevices = true
	s := startSim(t, cfg)
	before := time.Now().UnixNano()
	if err := s.SetDeviceState("PJSIP/1001", "RINGING"); err != nil {
		t.Fatal(err)
	}
	if err := s.Backend().SetStasisState("Stasis:1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	code, got := trace(s)
	if code != http.StatusOK || len(got) != 2 {
		t.Fatalf("trace: status %d, %+v; want the two states", code, got)
	}
	for i, want := range []DeviceChange{{Device: "PJSIP/1001", State: "RINGING"}, {Device: "Stasis:1001", State: "INUSE"}} {
		if got[i].Device != want.Device || got[i].State != want.State || got[i].At < before || got[i].At > time.Now().UnixNano() {
			t.Errorf("trace[%d] = %+v, want %s %s at a time of this test", i, got[i], want.Device, want.State)
		}
	}
	if _, again := trace(s); len(again) != 0 {
		t.Errorf("second read = %+v, want nothing new", again)
	}
}
