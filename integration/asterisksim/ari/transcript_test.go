package ari

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const transcripts = "/work/shared/asterisk-transcripts"

// call is one REST exchange of an ari-rest.txt capture.
type call struct {
	method, path string
	status       int
	headers      map[string]string // lower-case names
	body         string
}

// readCalls parses an ari-rest.txt capture, skipping the test if missing.
func readCalls(t *testing.T, file string) []call {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(transcripts, file))
	if err != nil {
		t.Skipf("transcript missing: %v", err)
	}
	calls, err := parseCalls(string(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return calls
}

// parseCalls splits "=== [time] METHOD PATH ..." blocks.
func parseCalls(data string) ([]call, error) {
	var calls []call
	for _, block := range strings.Split(data, "=== ")[1:] {
		head, rest, _ := strings.Cut(block, "\n")
		f := strings.Fields(head)
		if len(f) > 0 && strings.Count(f[0], ":") == 2 && f[0][0] >= '0' && f[0][0] <= '9' {
			f = f[1:] // timestamp
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("bad header line %q", head)
		}
		c := call{method: f[0], path: f[1], headers: map[string]string{}}
		hdrs, body, _ := strings.Cut(rest, "\n\n")
		lines := strings.Split(hdrs, "\n")
		status := strings.Fields(lines[0])
		if len(status) < 2 {
			return nil, fmt.Errorf("bad status line %q", lines[0])
		}
		c.status, _ = strconv.Atoi(status[1])
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			c.headers[strings.ToLower(k)] = strings.TrimSpace(v)
		}
		if n, err := strconv.Atoi(c.headers["content-length"]); err == nil && n <= len(body) {
			body = body[:n]
		}
		c.body = body
		calls = append(calls, c)
	}
	return calls, nil
}

// capturedEvent is one line of an ari-events .jsonl capture.
type capturedEvent struct {
	raw   string
	event Event
	app   string
}

// readEvents returns the lines of the four kinds the simulator raises,
// decoded into the Event that would produce them. Channel events (the
// FastAGI phase) are skipped: the simulator has no channels.
func readEvents(t *testing.T, file string) []capturedEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(transcripts, file))
	if err != nil {
		t.Skipf("transcript missing: %v", err)
	}
	defer f.Close()
	var out []capturedEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m struct {
			Type        string          `json:"type"`
			Timestamp   string          `json:"timestamp"`
			Application string          `json:"application"`
			Endpoint    endpointJSON    `json:"endpoint"`
			DeviceState deviceStateJSON `json:"device_state"`
			Peer        peerJSON        `json:"peer"`
			ContactInfo contactInfoJSON `json:"contact_info"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch m.Type {
		case "DeviceStateChanged", "PeerStatusChange", "ContactStatusChange", "EndpointStateChange":
		default:
			continue
		}
		ts, err := time.Parse(timeLayout, m.Timestamp)
		if err != nil {
			t.Fatalf("%s: timestamp: %v", file, err)
		}
		e := Event{Kind: m.Type, Time: ts, Device: m.DeviceState.Name, State: m.DeviceState.State,
			Endpoint: Endpoint{Technology: m.Endpoint.Technology, Resource: m.Endpoint.Resource,
				State: m.Endpoint.State, ChannelIDs: m.Endpoint.ChannelIDs},
			ContactURI: m.ContactInfo.URI, ContactStatus: m.ContactInfo.ContactStatus,
			AOR: m.ContactInfo.AOR, RoundtripUsec: m.ContactInfo.RoundtripUsec, PeerStatus: m.Peer.PeerStatus}
		out = append(out, capturedEvent{raw: line, event: e, app: m.Application})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameEvent tells whether two captured lines stem from one core event
// (seen by two apps).
func sameEvent(a, b Event) bool {
	return a.Kind == b.Kind && absDur(a.Time.Sub(b.Time)) <= 2*time.Millisecond && a.Device == b.Device && a.State == b.State &&
		a.Endpoint.Resource == b.Endpoint.Resource && a.ContactStatus == b.ContactStatus && a.PeerStatus == b.PeerStatus
}
