package asterisksim

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

func reportLatencies(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// BenchmarkRegisterUDP measures a full digest REGISTER (401 + 200) over UDP loopback.
func BenchmarkRegisterUDP(b *testing.B) {
	cfg := testConfig(b)
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := sipua.New(context.Background(), sipua.Config{Server: s.SIPAddr(), User: "1001", Password: "pw1001", LocalAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		r, err := p.Register(context.Background())
		if err != nil || r.Status != 200 {
			b.Fatalf("register: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkFailedRegisterToAMIEvent measures from sending a wrong-password
// REGISTER to the ChallengeResponseFailed event arriving on an AMI session.
func BenchmarkFailedRegisterToAMIEvent(b *testing.B) {
	cfg := testConfig(b)
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a := dialAMI(b, s.AMIAddr())
	a.send(b, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
	a.waitContains(b, "Event: SuccessfulAuth", 1)
	p, err := sipua.New(context.Background(), sipua.Config{Server: s.SIPAddr(), User: "1001", Password: "bad", LocalAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := p.Register(context.Background()); err != nil {
			b.Fatal(err)
		}
		for strings.Count(a.text(), "Event: ChallengeResponseFailed") < i+1 {
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}
