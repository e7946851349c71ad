package ari

import (
	"encoding/json"
	"log/slog"
	"testing"
)

// FuzzHandle feeds websocket messages to the event decoder: nothing may
// panic, and a DeviceStateChanged must come out with its name and state.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{ // from asterisk-transcripts/ari-events.jsonl
		`{"type":"DeviceStateChanged","application":"aim","timestamp":"2026-11-25T11:26:36.022+0000","device_state":{"name":"PJSIP/1001","state":"NOT_INUSE"},"asterisk_id":"02:00:00:00:00:0a"}`,
		`{"type":"DeviceStateChanged","application":"aim","timestamp":"2026-11-25T11:26:59.043+0000","device_state":{"name":"Stasis:1001","state":"INUSE"},"asterisk_id":"02:00:00:00:00:0a"}`,
		`{"type":"PeerStatusChange","timestamp":"2026-11-25T11:26:36.022+0000","endpoint":{"technology":"PJSIP","resource":"1001","state":"online","channel_ids":[]},"peer":{"peer_status":"Reachable"},"asterisk_id":"02:00:00:00:00:0a","application":"aim"}`,
		`{"type":"ApplicationReplaced","application":"doorman"}`,
		`{"type":"DeviceStateChanged","timestamp":"yesterday","device_state":{"name":"PJSIP/1001","state":"RINGING"}}`,
		`{"type":"DeviceStateChanged","device_state":7}`,
		`[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := &Native{log: slog.New(slog.DiscardHandler), events: make(chan DeviceStateEvent, 1), signal: make(chan struct{}, 1)}
		n.handle(data)
		var probe struct {
			Type string `json:"type"`
			DS   struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"device_state"`
		}
		wantEvent := json.Unmarshal(data, &probe) == nil && probe.Type == "DeviceStateChanged"
		select {
		case ev := <-n.events:
			if !wantEvent || ev.Device != probe.DS.Name || ev.State != probe.DS.State {
				t.Fatalf("event %+v from %q", ev, data)
			}
		default:
			if wantEvent {
				t.Fatalf("no event from %q", data)
			}
		}
	})
}
