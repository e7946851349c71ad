package agi

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkSession measures whole AGI() calls (connect, environment,
// SET VARIABLE, GET VARIABLE, VERBOSE, close) against a zaf/agi server.
func BenchmarkSession(b *testing.B) {
	addr, _ := serveZaf(b, dialLocal)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res, err := DialApp(context.Background(), "agi://"+addr+"/dialLocal,1001,25", Channel{})
		if err != nil || res.Status != "SUCCESS" {
			b.Fatalf("%v %v", res, err)
		}
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
