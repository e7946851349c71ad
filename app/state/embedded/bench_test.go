package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/statetest"
	"github.com/asterisksupport/doorman/integration/measure"
)

func BenchmarkIncr(b *testing.B) {
	s, err := embedded.Open("", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Incr(ctx, "k", time.Minute); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDeviceStateDelivery(b *testing.B) {
	s, err := embedded.Open("", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.WatchDeviceStates(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	for i := range b.N {
		t0 := time.Now()
		err := s.PutDeviceState(ctx, state.DeviceState{Server: "a", Device: "PJSIP/1", State: []string{"INUSE", "NOT_INUSE"}[i%2]})
		if err != nil {
			b.Fatal(err)
		}
		<-w
		ds = append(ds, time.Since(t0))
	}
	measure.Report(b, ds, time.Microsecond)
}

// BenchmarkLookupAOR: 100,000 registrations across 10 servers, kept in the
// file too.
func BenchmarkLookupAOR(b *testing.B) {
	s, err := embedded.Open(b.TempDir()+"/state.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const servers, perServer, aors = 10, 10000, 50000
	statetest.LoadRegistrations(b, s, servers, perServer, aors)
	b.Run("serial", func(b *testing.B) {
		ds := statetest.LookupSerial(b, s, aors, servers*perServer/aors)
		measure.Report(b, ds, time.Microsecond)
	})
}
