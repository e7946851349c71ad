package agi

import (
	"context"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/measure"
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
	measure.Report(b, lat, time.Millisecond)
}
