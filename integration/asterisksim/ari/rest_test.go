package ari

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

var testUsers = map[string]string{"aim": "aimsecret"}

type testServer struct {
	*httptest.Server
	fake *fakeBackend
	h    *Handler
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerQueue(t, queueSize)
}

func newTestServerQueue(t testing.TB, queue int) *testServer {
	t.Helper()
	f := newFake()
	h := newHandler(f, testUsers, nil, queue)
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &testServer{Server: s, fake: f, h: h}
}

// do sends an authenticated request and returns status, headers and body.
func (s *testServer) do(t testing.TB, method, path, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.SetBasicAuth("aim", "aimsecret")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// dial opens /ari/events for the given query.
func (s *testServer) dial(t testing.TB, query string) *websocket.Conn {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("Authorization", "Basic YWltOmFpbXNlY3JldA==") // aim:aimsecret
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/ari/events?"+query, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v (resp %v)", query, err, resp)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// world applies what happened outside ARI in the capture before a call:
// registrations change endpoint and real device states.
func world(f *fakeBackend, c call) {
	if c.method != "GET" || c.status != 200 {
		return
	}
	var v deviceStateJSON
	if strings.HasPrefix(c.path, "/ari/endpoints/") && strings.Count(c.path, "/") == 4 {
		var e endpointJSON
		if json.Unmarshal([]byte(c.body), &e) == nil {
			f.setEndpointState(e.Resource, e.State)
		}
	} else if strings.HasPrefix(c.path, "/ari/deviceStates/") && json.Unmarshal([]byte(c.body), &v) == nil &&
		strings.Contains(v.Name, "/") {
		f.setDevice(v.Name, v.State)
	}
}

func replay(t *testing.T, s *testServer, calls []call) {
	t.Helper()
	for i, c := range calls {
		world(s.fake, c)
		status, hdr, body := s.do(t, c.method, c.path, "")
		if status != c.status || body != c.body {
			t.Errorf("#%d %s %s:\n got %d %s\nwant %d %s", i, c.method, c.path, status, body, c.status, c.body)
		}
		if got, want := hdr.Get("Content-Type"), c.headers["content-type"]; got != want {
			t.Errorf("#%d %s %s: Content-Type %q, want %q", i, c.method, c.path, got, want)
		}
		if got, want := hdr.Get("Server"), c.headers["server"]; got != want {
			t.Errorf("#%d %s %s: Server %q, want %q", i, c.method, c.path, got, want)
		}
		if got, want := hdr.Get("Content-Length"), c.headers["content-length"]; got != want && c.status != 204 {
			t.Errorf("#%d %s %s: Content-Length %q, want %q", i, c.method, c.path, got, want)
		}
	}
}

func TestReplayRESTCapture(t *testing.T) {
	s := newTestServer(t)
	s.dial(t, "app=aim&subscribeAll=true")
	s.dial(t, "app=aim2")
	calls := readCalls(t, "ari-rest.txt")
	if len(calls) < 20 {
		t.Fatalf("parsed only %d calls", len(calls))
	}
	replay(t, s, calls)
}

func TestReplayQualifySupplement(t *testing.T) {
	s := newTestServer(t)
	replay(t, s, readCalls(t, "qualify-supplement/ari-rest.txt"))
}

func TestReplayHintStasis(t *testing.T) {
	s := newTestServer(t)
	calls := readCalls(t, "supplement-2/4-hint-stasis/ari-rest.txt")
	if len(calls) < 40 {
		t.Fatalf("parsed only %d calls", len(calls))
	}
	replay(t, s, calls)
}

func TestBadAuth(t *testing.T) {
	s := newTestServer(t)
	want := readCalls(t, "ari-bad-auth.txt")[0]
	cases := []struct {
		name string
		mod  func(*http.Request)
	}{
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("aim", "wrongpw") }},
		{"unknown user", func(r *http.Request) { r.SetBasicAuth("nosuchuser", "x") }},
		{"none", func(*http.Request) {}},
		{"bad api_key", func(r *http.Request) { r.URL.RawQuery = "api_key=aim:nope" }},
		{"api_key without colon", func(r *http.Request) { r.URL.RawQuery = "api_key=aim" }},
		// Basic is checked first; a good api_key does not rescue it.
		{"bad basic good key", func(r *http.Request) {
			r.SetBasicAuth("aim", "wrongpw")
			r.URL.RawQuery = "api_key=aim:aimsecret"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", s.URL+"/ari/asterisk/info", nil)
			tc.mod(req)
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want.status || string(b) != want.body {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, want.status, want.body)
			}
			for _, k := range []string{"www-authenticate", "cache-control", "content-type", "content-length", "server"} {
				if got := resp.Header.Get(k); got != want.headers[k] {
					t.Errorf("%s: %q, want %q", k, got, want.headers[k])
				}
			}
			// Asterisk spells it "Content-type" on the wire.
			if _, ok := resp.Header["Content-Type"]; !ok {
				t.Errorf("no content type header at all: %v", resp.Header)
			}
		})
	}
	t.Run("websocket", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set("Authorization", "Basic YWltOndyb25ncHc=") // aim:wrongpw
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/ari/events?app=aim", hdr)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("got %v %v, want 401", resp, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want.body {
			t.Fatalf("body %s", b)
		}
	})
	t.Run("api_key ok", func(t *testing.T) {
		resp, err := s.Client().Get(s.URL + "/ari/endpoints?api_key=aim:aimsecret")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}
