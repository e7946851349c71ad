package ari

import (
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/measure"
)

// BenchmarkEventDelivery measures a core event's trip to a subscribed
// websocket client.
func BenchmarkEventDelivery(b *testing.B) {
	s := newBenchServer(b)
	ws := s.dial(b, "app=bench&subscribeAll=true")
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		s.fake.emit(Event{Kind: "DeviceStateChanged", Time: start, Device: "PJSIP/1001", State: "INUSE"})
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	measure.Report(b, lat, time.Millisecond)
}

// BenchmarkStasisPutEcho measures PUT /deviceStates/Stasis:X until its
// DeviceStateChanged echo arrives, the loop doorman's lamps go through.
func BenchmarkStasisPutEcho(b *testing.B) {
	s := newBenchServer(b)
	ws := s.dial(b, "app=bench")
	if st, _, _ := s.do(b, "POST", "/ari/applications/bench/subscription?eventSource=deviceState:", ""); st != 200 {
		b.Fatal("subscribe failed")
	}
	lat := make([]time.Duration, 0, b.N)
	states := []string{"INUSE", "NOT_INUSE"}
	i := 0
	for b.Loop() {
		start := time.Now()
		if st, _, _ := s.do(b, "PUT", "/ari/deviceStates/Stasis:1001?deviceState="+states[i%2], ""); st != 204 {
			b.Fatal("PUT failed")
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	measure.Report(b, lat, time.Millisecond)
}

func newBenchServer(b *testing.B) *testServer { return newTestServerQueue(b, queueSize) }
