package statetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// BenchAOR names the n-th AOR of LoadRegistrations (n < aors).
func BenchAOR(n int) string { return fmt.Sprintf("%05d", n) }

// LoadRegistrations fills s for the lookup benchmarks: servers x perServer
// registrations over aors AORs (each AOR on servers*perServer/aors
// servers), every server alive for an hour.
func LoadRegistrations(b *testing.B, s state.Store, servers, perServer, aors int) {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	for si := range servers {
		name := fmt.Sprintf("pbx%02d", si)
		if err := s.Heartbeat(ctx, name, time.Hour); err != nil {
			b.Fatal(err)
		}
		regs := make([]state.Registration, perServer)
		for i := range regs {
			n := si*perServer + i
			aor := BenchAOR(n % aors)
			regs[i] = state.Registration{Server: name, ServerAddr: "10.0.0.1:5060", Endpoint: aor, AOR: aor,
				Contact: fmt.Sprintf("sip:%s@192.0.2.%d:5060;transport=udp", aor, n%250),
				Source:  "192.0.2.1:5060", UserAgent: "Bench Phone 1.0",
				Expires: time.Now().Add(time.Hour), Updated: time.Now()}
		}
		if err := s.ReplaceRegistrations(ctx, name, regs); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d registrations in %v", servers*perServer, time.Since(t0))
}

// LookupSerial makes b.N lookups one at a time, spread over the AORs, each
// expected on want servers, and returns their latencies.
func LookupSerial(b *testing.B, s state.Store, aors, want int) []time.Duration {
	b.Helper()
	ctx := context.Background()
	ds := make([]time.Duration, 0, b.N)
	for i := range b.N {
		aor := BenchAOR((i * 7919) % aors)
		t := time.Now()
		regs, err := s.LookupAOR(ctx, aor)
		ds = append(ds, time.Since(t))
		if err != nil || len(regs) != want {
			b.Fatalf("LookupAOR %s = %d, %v", aor, len(regs), err)
		}
	}
	return ds
}
