package measure

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// relayEnv makes the test binary a relay of BenchmarkWakeFloor's ring.
const relayEnv = "DOORMAN_MEASURE_RELAY"

// TestMain runs the relay when the benchmark re-executes the test binary.
func TestMain(m *testing.M) {
	if addrs := os.Getenv(relayEnv); addrs != "" {
		if err := relay(addrs); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// relay accepts one connection on the first address of "in,out" and copies
// every byte it reads to the second, one read at a time.
func relay(addrs string) error {
	in, out, ok := strings.Cut(addrs, ",")
	if !ok {
		return fmt.Errorf("want in,out addresses, got %q", addrs)
	}
	ln, err := net.Listen("tcp", in)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	src, err := ln.Accept()
	if err != nil {
		return err
	}
	dst, err := net.Dial("tcp", out)
	if err != nil {
		return err
	}
	buf := make([]byte, 1)
	for {
		if _, err := src.Read(buf); err != nil {
			return nil
		}
		if _, err := dst.Write(buf); err != nil {
			return nil
		}
	}
}

// BenchmarkWakeFloor measures what a hop between idle processes costs on
// this machine: a ring of processes passing one byte over loopback TCP at
// 50 laps a second (the Busy Lamp Monitor's reference rate). Each hop wakes
// a sleeping process, which on a virtual machine with halted vCPUs costs
// far more than the copy. A change's path between servers through doorman
// crosses about four such hops (Asterisk -> agent -> Redis -> agent ->
// Asterisk), so this is the floor under that latency here.
func BenchmarkWakeFloor(b *testing.B) {
	for _, hops := range []int{2, 4} {
		b.Run(fmt.Sprintf("hops=%d", hops), func(b *testing.B) { benchRing(b, hops) })
	}
}

func benchRing(b *testing.B, hops int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	// Relays 1..hops-1 each listen on a free port and forward to the next;
	// the last forwards back to ln.
	addrs := make([]string, hops)
	addrs[0] = ln.Addr().String()
	for i := 1; i < hops; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	// Start from the last relay, so each one's next hop already listens.
	for i := hops - 1; i >= 1; i-- {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), relayEnv+"="+addrs[i]+","+addrs[(i+1)%hops])
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		ready := make([]byte, len("ready\n"))
		if _, err := out.Read(ready); err != nil {
			b.Fatalf("relay %d: %v", i, err)
		}
	}
	first, err := net.Dial("tcp", addrs[1%hops])
	if err != nil {
		b.Fatal(err)
	}
	defer first.Close()
	back, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer back.Close()
	buf := []byte{1}
	lat := make([]time.Duration, 0, b.N)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		start := time.Now()
		if _, err := first.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := back.Read(buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	Report(b, lat, time.Millisecond)
	b.ReportMetric(0, "ns/op")
}
