package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim"
)

// syncBuf is a bytes.Buffer safe to read while run writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRunPrintsAddressesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-ami", "127.0.0.1:0", "-sip", "127.0.0.1:0", "-http", "", "-control", "127.0.0.1:0",
			"-endpoint", "2001:pw", "-system-name", "sim-x"}, &out, &errb)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "sim-x") {
		if time.Now().After(deadline) {
			t.Fatalf("no address line; stderr: %s", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "AMI 127.0.0.1:") || strings.Contains(out.String(), "AMI 127.0.0.1:0 ") {
		t.Errorf("bound AMI address not printed: %s", out.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-endpoint", "nocolon"}, &out, &errb); err == nil {
		t.Error("accepted -endpoint without a password")
	}
	if err := run(context.Background(), []string{"-system-name", "", "-ami", "", "-sip", "", "-http", ""}, &out, &errb); err == nil {
		t.Error("accepted an empty system name")
	}
}

func TestPhoneSubcommand(t *testing.T) {
	s, err := asterisksim.New(asterisksim.Config{SystemName: "sim-p", EntityID: "02:00:00:00:00:01", SIPAddr: "127.0.0.1:0",
		Endpoints: map[string]string{"1001": "pw1001"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb syncBuf
	if err := run(context.Background(), []string{"phone", "-server", s.SIPAddr(), "-password", "bad", "-count", "2", "-new-call-id"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "1001 register -> 401 Unauthorized") != 2 {
		t.Errorf("attacker output: %s", out.String())
	}
	out = syncBuf{}
	if err := run(context.Background(), []string{"phone", "-server", s.SIPAddr(), "-password", "pw1001", "-unregister"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1001 register -> 200 OK") || !strings.Contains(out.String(), "1001 unregister -> 200 OK") {
		t.Errorf("phone output: %s", out.String())
	}
	// Held registration: visible while running, gone after stop.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"phone", "-server", s.SIPAddr(), "-password", "pw1001", "-hold"}, &syncBuf{}, &errb)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Contacts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("held phone never registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(s.Contacts()) != 0 {
		t.Error("held phone did not unregister when stopped")
	}
	// No registrar: the drop is reported.
	dead := freeUDP(t)
	if err := run(context.Background(), []string{"phone", "-server", dead, "-password", "x", "-timeout", "100ms"}, &syncBuf{}, &errb); !errors.Is(err, errDropped) {
		t.Errorf("err = %v, want errDropped", err)
	}
}

func freeUDP(t *testing.T) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}
