package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
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
	ctx := context.Background()
	const servers, perServer, aors = 10, 10000, 50000
	t0 := time.Now()
	for si := range servers {
		name := fmt.Sprintf("pbx%02d", si)
		if err := s.Heartbeat(ctx, name, time.Hour); err != nil {
			b.Fatal(err)
		}
		regs := make([]state.Registration, perServer)
		for i := range regs {
			n := si*perServer + i
			aor := fmt.Sprintf("%05d", n%aors)
			regs[i] = state.Registration{Server: name, AOR: aor, Contact: "sip:" + aor + "@192.0.2.1:5060",
				Expires: time.Now().Add(time.Hour)}
		}
		if err := s.ReplaceRegistrations(ctx, name, regs); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d registrations in %v", servers*perServer, time.Since(t0))
	b.Run("serial", func(b *testing.B) {
		ds := make([]time.Duration, 0, b.N)
		for i := range b.N {
			aor := fmt.Sprintf("%05d", (i*7919)%aors)
			t := time.Now()
			regs, err := s.LookupAOR(ctx, aor)
			ds = append(ds, time.Since(t))
			if err != nil || len(regs) != 2 {
				b.Fatalf("LookupAOR %s = %d, %v", aor, len(regs), err)
			}
		}
		measure.Report(b, ds, time.Microsecond)
	})
}
