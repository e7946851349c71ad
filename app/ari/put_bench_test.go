package ari_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/aritest"
	"github.com/asterisksupport/doorman/integration/measure"
)

// BenchmarkSetStasisState: PUTs over real HTTP (keep-alive) to
// aritest.Server from 8 goroutines, echo events drained.
func BenchmarkSetStasisState(b *testing.B) {
	s := aritest.NewServer(user, pass)
	defer s.Close()
	n, err := ari.NewNative(context.Background(), ari.NativeConfig{URL: s.URL(), Username: user, Password: pass}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	<-n.Connected()
	go func() {
		for range n.Events() {
		}
	}()
	b.SetParallelism(4)
	cpu0 := measure.CPUSelf()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if err := n.SetStasisState(context.Background(), fmt.Sprintf("Stasis:%d", i%1000), []string{"INUSE", "NOT_INUSE"}[i%2]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	// Client and server share the process: both count.
	b.ReportMetric(float64(measure.CPUSelf()-cpu0)/float64(b.N)/1e3, "cpu_µs/put")
}
