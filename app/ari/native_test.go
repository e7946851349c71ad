package ari

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// ariServer is a small ARI on httptest, answering as Asterisk 22 does in
// asterisk-transcripts/ari-rest.txt.
type ariServer struct {
	t    *testing.T
	srv  *httptest.Server
	user string
	pass string

	mu      sync.Mutex
	stasis  map[string]string
	paths   []string // escaped request paths with query
	subs    []string // eventSource of each subscription POST
	conns   []*websocket.Conn
	block   chan struct{} // GET /deviceStates waits on it when set
	appName string
}

const entityID = "02:00:00:00:00:0a"

func newARIServer(t *testing.T) *ariServer {
	s := &ariServer{t: t, user: "doorman", pass: "s3cret-pw", stasis: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ari/", s.serve)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.dropAll()
		s.srv.Close()
	})
	return s
}

func (s *ariServer) url() string { return s.srv.URL + "/ari" }

func (s *ariServer) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (s *ariServer) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != s.user || p != s.pass {
		s.reply(w, 401, map[string]string{"message": "Authentication required"})
		return
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/ari")
	s.mu.Lock()
	s.paths = append(s.paths, r.Method+" "+path+"?"+r.URL.RawQuery)
	block := s.block
	s.mu.Unlock()
	switch {
	case path == "/events":
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.appName = r.URL.Query().Get("app")
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go func() { // read until closed (answers pings)
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	case path == "/asterisk/info":
		s.reply(w, 200, map[string]any{"system": map[string]string{"version": "GIT-22-69535d4837", "entity_id": entityID},
			"config": map[string]any{"name": "aim-a", "default_language": "en"},
			"status": map[string]string{"startup_time": "2026-11-25T11:26:23.659+0000"}})
	case strings.HasPrefix(path, "/applications/") && r.Method == http.MethodPost:
		s.mu.Lock()
		s.subs = append(s.subs, r.URL.Query().Get("eventSource"))
		s.mu.Unlock()
		s.reply(w, 200, map[string]any{"name": "doorman", "device_names": []string{"__AST_DEVICE_STATE_ALL_TOPIC"}})
	case path == "/deviceStates" && r.Method == http.MethodGet:
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		s.mu.Lock()
		list := []map[string]string{}
		for k, v := range s.stasis {
			list = append(list, map[string]string{"name": k, "state": v})
		}
		s.mu.Unlock()
		s.reply(w, 200, list)
	case strings.HasPrefix(path, "/deviceStates/"):
		name := strings.TrimPrefix(r.URL.Path, "/ari/deviceStates/") // decoded
		switch r.Method {
		case http.MethodGet:
			st := "INVALID"
			s.mu.Lock()
			if v, ok := s.stasis[name]; ok {
				st = v
			} else if strings.HasPrefix(name, "Stasis:") {
				st = "UNKNOWN"
			} else if name == "PJSIP/1001" {
				st = "NOT_INUSE"
			}
			s.mu.Unlock()
			s.reply(w, 200, map[string]string{"name": name, "state": st})
		case http.MethodPut:
			if !strings.HasPrefix(name, "Stasis:") {
				s.reply(w, 409, map[string]string{"message": "Uncontrolled device specified"})
				return
			}
			st := r.URL.Query().Get("deviceState")
			if !writableStates[st] {
				s.reply(w, 500, map[string]string{"message": "Unknown device"})
				return
			}
			s.mu.Lock()
			s.stasis[name] = st
			s.mu.Unlock()
			w.WriteHeader(204)
			s.send(name, st)
		}
	default:
		s.reply(w, 404, map[string]string{"message": "Resource not found"})
	}
}

// send pushes a DeviceStateChanged, byte-shaped like ari-events.jsonl.
func (s *ariServer) send(device, state string) {
	msg := `{"type":"DeviceStateChanged","application":"doorman","timestamp":"2026-11-25T11:26:36.022+0000","device_state":{"name":"` +
		device + `","state":"` + state + `"},"asterisk_id":"` + entityID + `"}`
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.WriteMessage(websocket.TextMessage, []byte(msg))
	}
}

func (s *ariServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *ariServer) subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subs...)
}

func (s *ariServer) seen(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.paths {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// logBuf collects log output to check what was (not) logged.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startNative(t *testing.T, s *ariServer, edit func(*NativeConfig)) (*Native, *logBuf) {
	t.Helper()
	cfg := NativeConfig{URL: s.url(), Username: s.user, Password: s.pass,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, RequestTimeout: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	lb := &logBuf{}
	n, err := NewNative(context.Background(), cfg, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, lb
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s signal", what)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func nextEvent(t *testing.T, n *Native) DeviceStateEvent {
	t.Helper()
	select {
	case ev := <-n.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return DeviceStateEvent{}
}

func TestNativeConnectsSubscribesAndStreams(t *testing.T) {
	s := newARIServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	st := n.Status()
	if !st.Connected || st.Node.ID != entityID || st.Node.Name != "aim-a" || st.Err != "" {
		t.Fatalf("status %+v", st)
	}
	if subs := s.subscriptions(); len(subs) != 1 || subs[0] != "deviceState:" {
		t.Fatalf("subscriptions %q, want one deviceState:", subs)
	}
	if !s.seen("POST /applications/doorman/subscription?eventSource=deviceState%3A") {
		t.Fatal("subscription POST not made for app doorman")
	}
	s.send("PJSIP/1001", "RINGING")
	ev := nextEvent(t, n)
	want := time.Date(2026, 11, 25, 11, 26, 36, 22e6, time.UTC)
	if ev.Device != "PJSIP/1001" || ev.State != "RINGING" || ev.Node != entityID || !ev.Time.Equal(want) || ev.Received.IsZero() {
		t.Fatalf("event %+v", ev)
	}
}

func TestNativeRESTAsAsterisk(t *testing.T) {
	s := newARIServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	ctx := context.Background()

	st, err := n.DeviceState(ctx, "PJSIP/1001")
	if err != nil || st != "NOT_INUSE" {
		t.Fatalf("DeviceState(PJSIP/1001) = %q, %v", st, err)
	}
	if !s.seen("GET /deviceStates/PJSIP%2F1001?") {
		t.Fatal("device name not escaped as PJSIP%2F1001")
	}
	if err := n.SetStasisState(ctx, "Stasis:1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	if !s.seen("PUT /deviceStates/Stasis:1001?deviceState=INUSE") {
		t.Fatal("PUT not as expected")
	}
	if ev := nextEvent(t, n); ev.Device != "Stasis:1001" || ev.State != "INUSE" {
		t.Fatalf("echo %+v", ev)
	}
	all, err := n.StasisStates(ctx)
	if err != nil || len(all) != 1 || all["Stasis:1001"] != "INUSE" {
		t.Fatalf("StasisStates = %v, %v", all, err)
	}
	if st, _ := n.DeviceState(ctx, "Stasis:9"); st != "UNKNOWN" {
		t.Fatalf("unset Stasis state %q", st)
	}
	// Refused before reaching Asterisk, with the reason.
	if err := n.SetStasisState(ctx, "PJSIP:1001", "INUSE"); !errors.Is(err, ErrNotStasis) {
		t.Fatalf("non-Stasis write: %v", err)
	}
	if err := n.SetStasisState(ctx, "Stasis:1001", "UNKNOWN"); !errors.Is(err, ErrBadState) {
		t.Fatalf("UNKNOWN write: %v", err)
	}
}

func TestNativeHTTPErrorsCarryCodeAndMessage(t *testing.T) {
	s := newARIServer(t)
	n, _ := startNative(t, s, nil)
	// Bypass the local check to see Asterisk's 500 as a typed error.
	err := n.do(context.Background(), http.MethodPut, devicePath("Stasis:1001"), map[string][]string{"deviceState": {"BOGUS"}}, nil)
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != 500 || he.Message != "Unknown device" || StatusCode(err) != 500 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "500 Unknown device") {
		t.Fatalf("message %q", err.Error())
	}
}

func TestNativeWrongPasswordIsReportedNotHung(t *testing.T) {
	s := newARIServer(t)
	n, logs := startNative(t, s, func(c *NativeConfig) { c.Password = "wrong-pw-xyz" })
	eventually(t, "401 in status", func() bool { return n.Status().Err == "ARI: 401 unauthorized" })
	if n.Status().Connected {
		t.Fatal("connected with a wrong password")
	}
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("REST with wrong password: %v", err)
	}
	eventually(t, "a retry", func() bool { return strings.Count(logs.String(), "still not connected") >= 1 })
	out := logs.String()
	if !strings.Contains(out, "401 unauthorized") {
		t.Fatalf("log lacks the cause:\n%s", out)
	}
	if strings.Count(out, "level=WARN") != 1 {
		t.Fatalf("the same cause was logged at WARN more than once:\n%s", out)
	}
	if strings.Contains(out, "wrong-pw-xyz") || strings.Contains(out, s.pass) {
		t.Fatalf("password in logs:\n%s", out)
	}
	// Fixing credentials on the server side is not possible; but closing must not hang.
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
}

func TestNativeReconnectResubscribes(t *testing.T) {
	s := newARIServer(t)
	n, logs := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	s.dropAll() // Asterisk restarts, or the network hiccups
	waitSignal(t, n.Connected(), "reconnected")
	if subs := s.subscriptions(); len(subs) != 2 {
		t.Fatalf("subscriptions after reconnect: %q, want 2", subs)
	}
	if st := n.Status(); !st.Connected || st.Reconnects != 1 {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "websocket read") {
		t.Fatalf("the drop's cause was not logged:\n%s", logs.String())
	}
	s.send("PJSIP/1002", "INUSE")
	if ev := nextEvent(t, n); ev.Device != "PJSIP/1002" {
		t.Fatalf("event after reconnect %+v", ev)
	}
}

func TestNativeRESTCallsAreBounded(t *testing.T) {
	s := newARIServer(t)
	block := make(chan struct{})
	defer close(block)
	n, _ := startNative(t, s, func(c *NativeConfig) { c.RequestTimeout = 100 * time.Millisecond })
	waitSignal(t, n.Connected(), "connected")
	s.mu.Lock()
	s.block = block
	s.mu.Unlock()
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call returned %v, want a deadline", err)
	}
}

func TestNativeSlowConsumerDropsAndAsksForResync(t *testing.T) {
	s := newARIServer(t)
	n, _ := startNative(t, s, func(c *NativeConfig) { c.EventBuffer = 2 })
	waitSignal(t, n.Connected(), "connected")
	for range 10 {
		s.send("PJSIP/1001", "INUSE")
	}
	eventually(t, "drops counted", func() bool { return n.Status().Dropped == 8 })
	waitSignal(t, n.Connected(), "resync after drop")
}

func TestNativeCloseClosesEvents(t *testing.T) {
	s := newARIServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	n.Close()
	for range n.Events() {
	}
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestNativeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  NativeConfig
		want string
	}{
		{NativeConfig{URL: "127.0.0.1:8088", Username: "u", Password: "p"}, "ari: url: not an absolute URL"},
		{NativeConfig{URL: "http://u:p@127.0.0.1:8088/ari", Username: "u", Password: "p"}, "must not carry credentials"},
		{NativeConfig{URL: "http://127.0.0.1:8088/ari", Password: "p"}, "ari: username: required"},
		{NativeConfig{URL: "http://127.0.0.1:8088/ari", Username: "u"}, "ari: password: required"},
		{NativeConfig{URL: "http://127.0.0.1:8088/ari", Username: "u", Password: "p", Application: "a/b"}, "ari: application:"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg.LogValue(), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "p@") {
			t.Errorf("credentials in error %q", err)
		}
	}
	c := NativeConfig{URL: "https://pbx:8089/ari/"}.withDefaults()
	if c.WebsocketURL != "wss://pbx:8089/ari/events" || c.Application != "doorman" {
		t.Fatalf("defaults %+v", c)
	}
}
