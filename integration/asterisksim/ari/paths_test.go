package ari

import (
	"net/http"
	"strings"
	"testing"
)

// TestPathsAndErrors pins the answers Asterisk's res_ari gives outside the
// captured happy path.
func TestPathsAndErrors(t *testing.T) {
	s := newTestServer(t)
	s.dial(t, "app=aim&subscribeAll=true")
	s.dial(t, "app=aim2")
	cases := []struct {
		method, path, body string
		status             int
		want               string // exact body, or a prefix ending in "*"
		allow              string
	}{
		{"GET", "/ari/nosuch", "", 404, `{"message":"Resource not found"}`, ""},
		{"GET", "/ari/asterisk", "", 405, `{"message":"Invalid method"}`, "OPTIONS"},
		{"GET", "/ari", "", 405, `{"message":"Invalid method"}`, "OPTIONS"},
		{"POST", "/ari/deviceStates", "", 405, `{"message":"Invalid method"}`, "OPTIONS,GET"},
		{"POST", "/ari/deviceStates/Stasis:1", "", 405, `{"message":"Invalid method"}`, "OPTIONS,GET,PUT,DELETE"},
		{"GET", "/ari/applications/aim/subscription", "", 405, `{"message":"Invalid method"}`, "OPTIONS,POST,DELETE"},
		{"OPTIONS", "/ari/deviceStates/x", "", 204, ``, "OPTIONS,GET,PUT,DELETE"},
		{"GET", "/ari/endpoints/", "", 404, `{"message":"ARI URLs do not end with a slash. Try /ari/endpoints"}`, ""},
		// strsep stops at an empty segment: this is GET /endpoints.
		{"GET", "/ari/endpoints//PJSIP", "", 200, `[{"technology":"PJSIP","resource":"1001"*`, ""},
		{"GET", "/ari/endpoints/SIP", "", 404, `{"message":"No Endpoints found - invalid tech SIP"}`, ""},
		{"GET", "/ari/endpoints/Local", "", 200, `[]`, ""},
		{"GET", "/ari/endpoints/PJSIP", "", 200, `[{"technology":"PJSIP","resource":"1001"*`, ""},
		{"GET", "/ari/endpoints/PJSIP/1001/x", "", 404, `{"message":"Resource not found"}`, ""},
		{"GET", "/ari/deviceStates/Stasis%3A1001", "", 200, `{"name":"Stasis:1001","state":"UNKNOWN"}`, ""},
		{"GET", "/ari/deviceStates/nothing", "", 200, `{"name":"nothing","state":"INVALID"}`, ""},
		{"PUT", "/ari/deviceStates/Stasis:", "", 404, `{"message":"Device name is missing"}`, ""},
		{"PUT", "/ari/deviceStates/Stasis:1", "", 500, `{"message":"Unknown device"}`, ""},
		{"PUT", "/ari/deviceStates/stasis:1?deviceState=busy", "", 204, ``, ""},
		{"GET", "/ari/deviceStates", "", 200, `[{"name":"Stasis:1","state":"BUSY"}]`, ""},
		{"PUT", "/ari/deviceStates/Stasis:1", `{"deviceState":7}`, 500, `{"message":"Unknown device"}`, ""},
		{"PUT", "/ari/deviceStates/Stasis:1", `{"deviceState":`, 400, `{"message":"Error parsing request body"}`, ""},
		{"DELETE", "/ari/deviceStates/PJSIP%2F1001", "", 409, `{"message":"Uncontrolled device specified"}`, ""},
		{"DELETE", "/ari/deviceStates/Stasis:never", "", 204, ``, ""},
		{"GET", "/ari/applications/nosuch", "", 404, `{"message":"Application not found"}`, ""},
		{"POST", "/ari/applications/aim2/subscription", "", 400, `{"message":"Missing parameter eventSource"}`, ""},
		{"POST", "/ari/applications/nosuch/subscription?eventSource=deviceState:", "", 404, `{"message":"Application not found"}`, ""},
		{"POST", "/ari/applications/aim2/subscription?eventSource=devicestate:", "", 400, `{"message":"Invalid event source URI scheme"}`, ""},
		{"POST", "/ari/applications/aim2/subscription?eventSource=endpoint:PJSIP/9999", "", 422, `{"message":"Event source does not exist"}`, ""},
		{"POST", "/ari/applications/aim2/subscription?eventSource=endpoint:SIP", "", 422, `{"message":"Event source does not exist"}`, ""},
		{"POST", "/ari/applications/aim2/subscription?eventSource=channel:1234.5", "", 422, `{"message":"Event source does not exist"}`, ""},
		{"POST", "/ari/applications/aim2/subscription?eventSource=deviceState:PJSIP/1001,endpoint:PJSIP/1001", "", 200,
			`{"name":"aim2","channel_ids":[],"bridge_ids":[],"endpoint_ids":["PJSIP/1001"],"device_names":["PJSIP/1001"],"events_allowed":[],"events_disallowed":[]}`, ""},
		{"POST", "/ari/applications/aim2/subscription", `{"eventSource":["channel:","bridge:"]}`, 200,
			`{"name":"aim2","channel_ids":["__AST_CHANNEL_ALL_TOPIC"],"bridge_ids":["__AST_BRIDGE_ALL_TOPIC"],"endpoint_ids":["PJSIP/1001"],"device_names":["PJSIP/1001"],"events_allowed":[],"events_disallowed":[]}`, ""},
		{"DELETE", "/ari/applications/aim2/subscription?eventSource=deviceState:PJSIP/1002", "", 422, `{"message":"Event source was not subscribed to"}`, ""},
		{"DELETE", "/ari/applications/aim2/subscription?eventSource=deviceState:PJSIP/1001", "", 200,
			`{"name":"aim2","channel_ids":["__AST_CHANNEL_ALL_TOPIC"],"bridge_ids":["__AST_BRIDGE_ALL_TOPIC"],"endpoint_ids":["PJSIP/1001"],"device_names":[],"events_allowed":[],"events_disallowed":[]}`, ""},
		{"DELETE", "/ari/applications/aim2/subscription", "", 400, `{"message":"Missing parameter eventSource"}`, ""},
		// Under subscribeAll a specific device is already covered.
		{"DELETE", "/ari/applications/aim/subscription?eventSource=deviceState:PJSIP/1001", "", 200, `{"name":"aim",*`, ""},
		{"GET", "/ari/events?app=x", "", 426, `<!DOCTYPE HTML*`, ""},
		{"GET", "/ari/channels", "", 200, `[]`, ""},
		{"GET", "/ari/asterisk/info?only=system", "", 200, `{"system":{"version":"GIT-22-69535d4837","entity_id":"02:00:00:00:00:0a"}}`, ""},
		{"GET", "/other", "", 404, `<!DOCTYPE HTML*`, ""},
		{"PATCH", "/ari/deviceStates", "", 501, `<!DOCTYPE HTML*`, ""},
	}
	for _, tc := range cases {
		status, hdr, body := s.do(t, tc.method, tc.path, tc.body)
		ok := body == tc.want
		if p, isPrefix := strings.CutSuffix(tc.want, "*"); isPrefix {
			ok = strings.HasPrefix(body, p)
		}
		if status != tc.status || !ok {
			t.Errorf("%s %s %s: got %d %s, want %d %s", tc.method, tc.path, tc.body, status, body, tc.status, tc.want)
		}
		if got := hdr.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestEventsRefusals(t *testing.T) {
	s := newTestServer(t)
	for _, q := range []string{"", "app=", "app=a,,b"} {
		req, _ := http.NewRequest("GET", s.URL+"/ari/events?"+q, nil)
		req.SetBasicAuth("aim", "aimsecret")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%q: status %d, want 400", q, resp.StatusCode)
		}
	}
	if n := s.fake.subscribers(); n != 0 {
		t.Fatalf("refused sockets left %d backend subscriptions", n)
	}
}
