package ariproxy

import (
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/asterisksupport/doorman/app/ari"
)

// decoder is a client without NATS, enough to run onEvent.
func decoder(node string) *Client {
	c := &Client{cfg: Config{}.withDefaults(), log: slog.New(slog.DiscardHandler),
		events: make(chan ari.DeviceStateEvent, 4), signal: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		known: known{dev: map[string]devState{}}}
	c.node.Store(&node)
	return c
}

func TestOnEvent(t *testing.T) {
	c := decoder("02:00:00:00:00:0a")
	msg := func(subject, data string) *nats.Msg { return &nats.Msg{Subject: subject, Data: []byte(data)} }
	// As ari-proxy publishes it (an ari/v5 event, with the key it adds).
	c.onEvent(msg("ari.event.doorman.02:00:00:00:00:0a", `{"type":"DeviceStateChanged","application":"doorman","timestamp":"2026-11-25T11:26:36.022+0000","asterisk_id":"02:00:00:00:00:0a","device_state":{"key":{"kind":"devicestate","id":"PJSIP/1001"},"name":"PJSIP/1001","state":"NOT_INUSE"}}`))
	// Another node's event, another type, garbage: nothing.
	c.onEvent(msg("ari.event.doorman.02:00:00:00:00:0b", `{"type":"DeviceStateChanged","asterisk_id":"02:00:00:00:00:0b","device_state":{"name":"PJSIP/1001","state":"BUSY"}}`))
	c.onEvent(msg("ari.event.doorman.02:00:00:00:00:0a", `{"type":"ChannelCreated","asterisk_id":"02:00:00:00:00:0a"}`))
	c.onEvent(msg("ari.event.doorman.02:00:00:00:00:0a", `{"type":`))
	// No asterisk_id: the subject names the node.
	c.onEvent(msg("ari.event.doorman.02:00:00:00:00:0a", `{"type":"DeviceStateChanged","timestamp":"bad","device_state":{"name":"Stasis:1001","state":"BUSY"}}`))
	if len(c.events) != 2 {
		t.Fatalf("%d events, want 2", len(c.events))
	}
	ev := <-c.events
	if ev.Node != "02:00:00:00:00:0a" || ev.Device != "PJSIP/1001" || ev.State != "NOT_INUSE" || ev.Time.IsZero() {
		t.Fatalf("event: %+v", ev)
	}
	ev = <-c.events
	if ev.Node != "02:00:00:00:00:0a" || ev.Device != "Stasis:1001" || !ev.Time.IsZero() {
		t.Fatalf("event: %+v", ev)
	}
	if _, ok := c.known.dev["Stasis:1001"]; ok {
		t.Fatal("Stasis: devices are not repaired")
	}
	// A full buffer drops, counts and asks for a resync.
	for range 5 {
		c.onEvent(msg("ari.event.doorman.x", `{"type":"DeviceStateChanged","asterisk_id":"02:00:00:00:00:0a","device_state":{"name":"PJSIP/1","state":"BUSY"}}`))
	}
	if c.dropped.Load() != 1 || len(c.signal) != 1 {
		t.Fatalf("dropped %d, signal %d", c.dropped.Load(), len(c.signal))
	}
}

func FuzzOnEvent(f *testing.F) {
	f.Add("ari.event.doorman.n", []byte(`{"type":"DeviceStateChanged","application":"aim","timestamp":"2026-11-25T11:26:36.022+0000","device_state":{"name":"PJSIP/1001","state":"NOT_INUSE"},"asterisk_id":"n"}`))
	f.Add("ari.event.doorman.n", []byte(`{"type":"DeviceStateChanged","device_state":{"name":"Stasis:1001","state":"BUSY"}}`))
	f.Add("n", []byte(`{"type":"DeviceStateChanged","device_state":null}`))
	f.Add("", []byte(`[]`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		c := decoder("n")
		c.onEvent(&nats.Msg{Subject: subject, Data: data})
		for len(c.events) > 0 {
			if ev := <-c.events; ev.Node != "n" {
				t.Fatalf("event of another node: %+v", ev)
			}
		}
	})
}
