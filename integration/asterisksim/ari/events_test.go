package ari

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sentinel is a device event every all-devices subscriber receives; reading
// up to it proves that nothing else was delivered before it.
var sentinel = Event{Kind: "DeviceStateChanged", Device: "Stasis:zz-sentinel", State: "BUSY"}

func readMsg(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// readUntilSentinel returns the messages before the sentinel.
func readUntilSentinel(t *testing.T, ws *websocket.Conn) []string {
	t.Helper()
	var out []string
	for {
		m := readMsg(t, ws)
		if strings.Contains(m, sentinel.Device) {
			return out
		}
		out = append(out, m)
	}
}

func compareLines(t *testing.T, who string, got []string, want []capturedEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d messages, want %d", who, len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, gt := splitTimestamp(got[i])
		w, wt := splitTimestamp(want[i].raw)
		// Asterisk stamps a device state per app, so two apps' copies of
		// one event may differ by a millisecond.
		if g != w || absDur(gt.Sub(wt)) > 2*time.Millisecond {
			t.Errorf("%s #%d:\n got %s\nwant %s", who, i, got[i], want[i].raw)
		}
	}
}

// splitTimestamp blanks the timestamp of a message and returns it parsed.
func splitTimestamp(m string) (string, time.Time) {
	const key = `"timestamp":"`
	i := strings.Index(m, key)
	if i < 0 || len(m) < i+len(key)+28 {
		return m, time.Time{}
	}
	ts, _ := time.Parse(timeLayout, m[i+len(key):i+len(key)+28])
	return m[:i+len(key)] + m[i+len(key)+28:], ts
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// mergeCaptures rebuilds the single stream of core events behind two apps'
// captures: shared events once, each app's own ones in place.
func mergeCaptures(a, b []capturedEvent) []Event {
	var out []Event
	inRest := func(e Event, rest []capturedEvent) bool {
		for _, c := range rest {
			if sameEvent(c.event, e) {
				return true
			}
		}
		return false
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && sameEvent(a[i].event, b[j].event):
			out = append(out, a[i].event)
			i++
			j++
		case j < len(b) && !inRest(b[j].event, a[i:]) && (i == len(a) || !a[i].event.Time.Before(b[j].event.Time)):
			out = append(out, b[j].event)
			j++
		case i < len(a):
			out = append(out, a[i].event)
			i++
		default:
			out = append(out, b[j].event)
			j++
		}
	}
	return out
}

// TestEventsMatchCapture replays the core events of the main capture to app
// aim (subscribeAll) and app aim2 (nothing until the PHASE2 POSTs) and checks
// that each receives exactly its captured lines, byte for byte.
func TestEventsMatchCapture(t *testing.T) {
	aimWant := readEvents(t, "ari-events.jsonl")
	aim2Want := readEvents(t, "ari-events-aim2.jsonl")
	if len(aimWant) < 20 || len(aim2Want) < 10 {
		t.Fatalf("too few captured events: %d %d", len(aimWant), len(aim2Want))
	}
	s := newTestServer(t)
	aim := s.dial(t, "app=aim&subscribeAll=true")
	aim2 := s.dial(t, "app=aim2")

	phase2, _ := time.Parse(time.RFC3339, "2026-11-25T11:26:45Z")
	posted := false
	for _, e := range mergeCaptures(aimWant, aim2Want) {
		if !posted && !e.Time.Before(phase2) {
			for _, app := range []string{"aim", "aim2"} {
				for _, src := range []string{"endpoint:PJSIP", "deviceState:"} {
					if st, _, body := s.do(t, "POST", "/ari/applications/"+app+"/subscription?eventSource="+src, ""); st != 200 {
						t.Fatalf("POST %s %s: %d %s", app, src, st, body)
					}
				}
			}
			posted = true
		}
		s.fake.emit(e)
	}
	s.fake.emit(sentinel)
	compareLines(t, "aim", readUntilSentinel(t, aim), aimWant)
	compareLines(t, "aim2", readUntilSentinel(t, aim2), aim2Want)
}

// TestEventsSupplementCaptures replays the other captures (app aim,
// subscribeAll) the same way.
func TestEventsSupplementCaptures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(transcripts, "supplement-2/*/ari-events.jsonl"))
	files = append(files, filepath.Join(transcripts, "qualify-supplement/ari-events.jsonl"))
	for _, f := range files {
		rel, _ := filepath.Rel(transcripts, f)
		t.Run(rel, func(t *testing.T) {
			want := readEvents(t, rel)
			s := newTestServer(t)
			ws := s.dial(t, "app=aim&subscribeAll=true")
			for _, c := range want {
				s.fake.emit(c.event)
			}
			s.fake.emit(sentinel)
			compareLines(t, "aim", readUntilSentinel(t, ws), want)
		})
	}
}

func TestManualAppGetsOnlySubscribed(t *testing.T) {
	s := newTestServer(t)
	ws := s.dial(t, "app=doorman")
	ep := Endpoint{Technology: "PJSIP", Resource: "1001", State: "online"}
	all := []Event{
		{Kind: "DeviceStateChanged", Device: "PJSIP/1001", State: "NOT_INUSE"},
		{Kind: "DeviceStateChanged", Device: "PJSIP/1002", State: "NOT_INUSE"},
		{Kind: "EndpointStateChange", Endpoint: ep},
		{Kind: "PeerStatusChange", Endpoint: ep, PeerStatus: "Reachable"},
		{Kind: "ContactStatusChange", Endpoint: ep, ContactStatus: "NonQualified", AOR: "1001", ContactURI: "sip:1001@127.0.0.1:5070"},
	}
	for _, e := range all {
		s.fake.emit(e)
	}
	// Nothing yet: subscribe to one device and the sentinel, then replay.
	for _, src := range []string{"deviceState:PJSIP/1001", "deviceState:" + sentinel.Device} {
		if st, _, body := s.do(t, "POST", "/ari/applications/doorman/subscription?eventSource="+src, ""); st != 200 {
			t.Fatalf("POST %s: %d %s", src, st, body)
		}
	}
	for _, e := range all {
		s.fake.emit(e)
	}
	s.fake.emit(sentinel)
	got := readUntilSentinel(t, ws)
	if len(got) != 1 || !strings.Contains(got[0], `"name":"PJSIP/1001"`) {
		t.Fatalf("got %q, want only the PJSIP/1001 device state", got)
	}
	// endpoint:PJSIP/1001 adds its endpoint, peer and contact changes.
	if st, _, body := s.do(t, "POST", "/ari/applications/doorman/subscription?eventSource=endpoint:PJSIP/1001", ""); st != 200 {
		t.Fatalf("POST endpoint: %d %s", st, body)
	}
	for _, e := range all {
		s.fake.emit(e)
	}
	s.fake.emit(sentinel)
	var kinds []string
	for _, m := range readUntilSentinel(t, ws) {
		var v struct{ Type string }
		_ = json.Unmarshal([]byte(m), &v)
		kinds = append(kinds, v.Type)
	}
	want := "DeviceStateChanged,EndpointStateChange,PeerStatusChange,ContactStatusChange"
	if strings.Join(kinds, ",") != want {
		t.Fatalf("kinds %v, want %s", kinds, want)
	}
}

func TestStasisPutEchoes(t *testing.T) {
	s := newTestServer(t)
	ws := s.dial(t, "app=doorman")
	if st, _, body := s.do(t, "POST", "/ari/applications/doorman/subscription", `{"eventSource":"deviceState:"}`); st != 200 {
		t.Fatalf("subscribe: %d %s", st, body)
	}
	if st, _, body := s.do(t, "PUT", "/ari/deviceStates/Stasis:1001", `{"deviceState":"inuse"}`); st != 204 {
		t.Fatalf("PUT: %d %s", st, body)
	}
	m := readMsg(t, ws)
	var v struct {
		Type        string          `json:"type"`
		Application string          `json:"application"`
		DeviceState deviceStateJSON `json:"device_state"`
		AsteriskID  string          `json:"asterisk_id"`
	}
	if err := json.Unmarshal([]byte(m), &v); err != nil {
		t.Fatal(err)
	}
	if v.Type != "DeviceStateChanged" || v.Application != "doorman" || v.AsteriskID != "02:00:00:00:00:0a" ||
		v.DeviceState != (deviceStateJSON{"Stasis:1001", "INUSE"}) {
		t.Fatalf("echo %s", m)
	}
}

func TestApplicationReplaced(t *testing.T) {
	s := newTestServer(t)
	old := s.dial(t, "app=doorman")
	if st, _, _ := s.do(t, "POST", "/ari/applications/doorman/subscription?eventSource=deviceState:", ""); st != 200 {
		t.Fatal("subscribe failed")
	}
	cur := s.dial(t, "app=doorman")
	m := readMsg(t, old)
	var v map[string]string
	if err := json.Unmarshal([]byte(m), &v); err != nil {
		t.Fatal(err)
	}
	if v["type"] != "ApplicationReplaced" || v["application"] != "doorman" || v["asterisk_id"] != "02:00:00:00:00:0a" {
		t.Fatalf("old socket got %s", m)
	}
	if !strings.HasPrefix(m, `{"type":"ApplicationReplaced","timestamp":"`) {
		t.Fatalf("key order: %s", m)
	}
	// The new socket inherits the subscription; the old one gets nothing more.
	s.fake.emit(sentinel)
	readMsg(t, cur)
	_ = old.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, b, err := old.ReadMessage(); err == nil {
		t.Fatalf("replaced socket still receives: %s", b)
	}
}

// TestSubscriptionsLiveWithApp: a reconnect keeps the app's subscriptions; a
// restarted Asterisk (new handler) starts fresh.
func TestSubscriptionsLiveWithApp(t *testing.T) {
	s := newTestServer(t)
	ws := s.dial(t, "app=doorman")
	if st, _, _ := s.do(t, "POST", "/ari/applications/doorman/subscription?eventSource=deviceState:", ""); st != 200 {
		t.Fatal("subscribe failed")
	}
	_ = ws.Close()
	waitFor(t, "backend unsubscribed", func() bool { return s.fake.subscribers() == 0 })
	// Device subscriptions alone do not keep the app registered.
	if st, _, body := s.do(t, "GET", "/ari/applications/doorman", ""); st != 404 {
		t.Fatalf("closed app still listed: %d %s", st, body)
	}
	ws = s.dial(t, "app=doorman")
	s.fake.emit(sentinel)
	readMsg(t, ws)

	restarted := newTestServer(t)
	ws2 := restarted.dial(t, "app=doorman")
	_, _, body := restarted.do(t, "GET", "/ari/applications/doorman", "")
	if !strings.Contains(body, `"device_names":[]`) {
		t.Fatalf("restart kept subscriptions: %s", body)
	}
	restarted.fake.emit(sentinel)
	_ = ws2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, b, err := ws2.ReadMessage(); err == nil {
		t.Fatalf("fresh app received %s", b)
	}
}

// TestSlowReaderDoesNotBlock floods a websocket that never reads: the
// backend's callback must return every time, and the socket is dropped.
func TestSlowReaderDoesNotBlock(t *testing.T) {
	s := newTestServerQueue(t, 8)
	s.dial(t, "app=slow&subscribeAll=true")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200000 {
			s.fake.emit(Event{Kind: "DeviceStateChanged", Device: fmt.Sprintf("PJSIP/%d", i), State: "INUSE"})
			if s.fake.subscribers() == 0 {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("backend blocked by a slow websocket reader")
	}
	waitFor(t, "slow socket dropped", func() bool { return s.fake.subscribers() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOneSocketTwoApps: app=a,b registers both; each event goes out once
// per app, with that app's name.
func TestOneSocketTwoApps(t *testing.T) {
	s := newTestServer(t)
	ws := s.dial(t, "app=a,b,a&subscribeAll=yes")
	_, _, body := s.do(t, "GET", "/ari/applications", "")
	if !strings.HasPrefix(body, `[{"name":"a","channel_ids":["__AST_CHANNEL_ALL_TOPIC"]`) || !strings.Contains(body, `{"name":"b",`) {
		t.Fatalf("applications %s", body)
	}
	s.fake.emit(Event{Kind: "DeviceStateChanged", Device: "PJSIP/1001", State: "RINGING"})
	var apps []string
	for range 2 {
		var v struct{ Application string }
		if err := json.Unmarshal([]byte(readMsg(t, ws)), &v); err != nil {
			t.Fatal(err)
		}
		apps = append(apps, v.Application)
	}
	if strings.Join(apps, ",") != "a,b" {
		t.Fatalf("apps %v", apps)
	}
	s.fake.emit(sentinel)
	for range 2 {
		if m := readMsg(t, ws); !strings.Contains(m, sentinel.Device) {
			t.Fatalf("extra message %s", m)
		}
	}
}

func TestCloseDropsWebsockets(t *testing.T) {
	s := newTestServer(t)
	ws := s.dial(t, "app=a&subscribeAll=true")
	s.h.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("websocket still open after Close")
	}
	waitFor(t, "backend unsubscribed", func() bool { return s.fake.subscribers() == 0 })
}
