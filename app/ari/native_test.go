package ari_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/aritest"
)

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

const user, pass = "doorman", "s3cret-pw"

func newServer(t *testing.T) *aritest.Server {
	s := aritest.NewServer(user, pass)
	t.Cleanup(s.Close)
	return s
}

func startNative(t *testing.T, s *aritest.Server, edit func(*ari.NativeConfig)) (*ari.Native, *logBuf) {
	t.Helper()
	return startNativeURL(t, s.URL(), edit)
}

func startNativeURL(t *testing.T, url string, edit func(*ari.NativeConfig)) (*ari.Native, *logBuf) {
	t.Helper()
	cfg := ari.NativeConfig{URL: url, Username: user, Password: pass,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, RequestTimeout: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	lb := &logBuf{}
	n, err := ari.NewNative(context.Background(), cfg, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
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

func nextEvent(t *testing.T, n *ari.Native) ari.DeviceStateEvent {
	t.Helper()
	select {
	case ev := <-n.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return ari.DeviceStateEvent{}
}

func TestNativeConnectsSubscribesAndStreams(t *testing.T) {
	s := newServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	st := n.Status()
	if !st.Connected || st.Node.ID != aritest.EntityID || st.Node.Name != "aim-a" || st.Err != "" {
		t.Fatalf("status %+v", st)
	}
	if subs := s.Subscriptions(); len(subs) != 1 || subs[0] != "deviceState:" {
		t.Fatalf("subscriptions %q, want one deviceState:", subs)
	}
	if !s.Seen("POST /applications/doorman/subscription?eventSource=deviceState%3A") {
		t.Fatal("subscription POST not made for app doorman")
	}
	s.Send("PJSIP/1001", "RINGING")
	ev := nextEvent(t, n)
	want := time.Date(2026, 11, 25, 11, 26, 36, 22e6, time.UTC)
	if ev.Device != "PJSIP/1001" || ev.State != "RINGING" || ev.Node != aritest.EntityID || !ev.Time.Equal(want) || ev.Received.IsZero() {
		t.Fatalf("event %+v", ev)
	}
}

func TestNativeRESTAsAsterisk(t *testing.T) {
	s := newServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	ctx := context.Background()

	s.Send("PJSIP/1001", "NOT_INUSE") // the phone registers
	nextEvent(t, n)
	st, err := n.DeviceState(ctx, "PJSIP/1001")
	if err != nil || st != "NOT_INUSE" {
		t.Fatalf("DeviceState(PJSIP/1001) = %q, %v", st, err)
	}
	if !s.Seen("GET /deviceStates/PJSIP%2F1001?") {
		t.Fatal("device name not escaped as PJSIP%2F1001")
	}
	if err := n.SetStasisState(ctx, "Stasis:1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	if !s.Seen("PUT /deviceStates/Stasis:1001?deviceState=INUSE") {
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
	if err := n.SetStasisState(ctx, "PJSIP:1001", "INUSE"); !errors.Is(err, ari.ErrNotStasis) {
		t.Fatalf("non-Stasis write: %v", err)
	}
	if err := n.SetStasisState(ctx, "Stasis:1001", "UNKNOWN"); !errors.Is(err, ari.ErrBadState) {
		t.Fatalf("UNKNOWN write: %v", err)
	}
}

func TestNativeHTTPErrorsCarryCodeAndMessage(t *testing.T) {
	s := newServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	s.SetPutError("Stasis:1001", 500)
	err := n.SetStasisState(context.Background(), "Stasis:1001", "INUSE")
	var he *ari.HTTPError
	if !errors.As(err, &he) || he.Code != 500 || he.Message != "Unknown device" || ari.StatusCode(err) != 500 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "500 Unknown device") {
		t.Fatalf("message %q", err.Error())
	}
}

func TestNativeWrongPasswordIsReportedNotHung(t *testing.T) {
	s := newServer(t)
	n, logs := startNative(t, s, func(c *ari.NativeConfig) { c.Password = "wrong-pw-xyz" })
	eventually(t, "401 in status", func() bool { return n.Status().Err == "ARI: 401 unauthorized" })
	if n.Status().Connected {
		t.Fatal("connected with a wrong password")
	}
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, ari.ErrUnauthorized) {
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
	if strings.Contains(out, "wrong-pw-xyz") || strings.Contains(out, pass) {
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
	s := newServer(t)
	n, logs := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	s.DropAll() // Asterisk restarts, or the network hiccups
	waitSignal(t, n.Connected(), "reconnected")
	if subs := s.Subscriptions(); len(subs) != 2 {
		t.Fatalf("subscriptions after reconnect: %q, want 2", subs)
	}
	if st := n.Status(); !st.Connected || st.Reconnects != 1 {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "websocket read") {
		t.Fatalf("the drop's cause was not logged:\n%s", logs.String())
	}
	s.Send("PJSIP/1002", "INUSE")
	if ev := nextEvent(t, n); ev.Device != "PJSIP/1002" {
		t.Fatalf("event after reconnect %+v", ev)
	}
}

func TestNativeRESTCallsAreBounded(t *testing.T) {
	s := newServer(t)
	block := make(chan struct{})
	defer close(block)
	n, _ := startNative(t, s, func(c *ari.NativeConfig) { c.RequestTimeout = 100 * time.Millisecond })
	waitSignal(t, n.Connected(), "connected")
	s.Block(block)
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call returned %v, want a deadline", err)
	}
}

func TestNativeSlowConsumerDropsAndAsksForResync(t *testing.T) {
	s := newServer(t)
	n, _ := startNative(t, s, func(c *ari.NativeConfig) { c.EventBuffer = 2 })
	waitSignal(t, n.Connected(), "connected")
	for range 10 {
		s.Send("PJSIP/1001", "INUSE")
	}
	eventually(t, "drops counted", func() bool { return n.Status().Dropped == 8 })
	waitSignal(t, n.Connected(), "resync after drop")
}

func TestNativeCloseClosesEvents(t *testing.T) {
	s := newServer(t)
	n, _ := startNative(t, s, nil)
	waitSignal(t, n.Connected(), "connected")
	n.Close()
	for range n.Events() {
	}
	if _, err := n.StasisStates(context.Background()); !errors.Is(err, ari.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestNativeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  ari.NativeConfig
		want string
	}{
		{ari.NativeConfig{URL: "127.0.0.1:8088", Username: "u", Password: "p"}, "ari: url: not an absolute URL"},
		{ari.NativeConfig{URL: "http://u:p@127.0.0.1:8088/ari", Username: "u", Password: "p"}, "must not carry credentials"},
		{ari.NativeConfig{URL: "ftp://127.0.0.1:8088/ari", Username: "u", Password: "p"}, "ari: url: scheme \"ftp\" is not http or https"},
		{ari.NativeConfig{URL: "http://127.0.0.1:8088/ari", Password: "p"}, "ari: username: required"},
		{ari.NativeConfig{URL: "http://127.0.0.1:8088/ari", Username: "u"}, "ari: password: required"},
		{ari.NativeConfig{URL: "http://127.0.0.1:8088/ari", Username: "u", Password: "p", Application: "a/b"}, "ari: application:"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg.LogValue(), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "p@") {
			t.Errorf("credentials in error %q", err)
		}
	}
}
