package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
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
