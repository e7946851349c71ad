package finder

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// benchStore is what the benchmarks need of a store.
type benchStore interface {
	state.Registrations
	state.Cluster
}

const (
	benchServers    = 10
	benchExtensions = 100_000
)

// fillBench registers benchExtensions extensions spread over benchServers
// servers (aim-a is the asking server) and keeps the servers alive.
func fillBench(b *testing.B, st benchStore) {
	b.Helper()
	ctx := context.Background()
	per := make([][]state.Registration, benchServers)
	exp := time.Now().Add(time.Hour)
	for i := range benchExtensions {
		s := i % benchServers
		ext := fmt.Sprintf("%d", 100000+i)
		per[s] = append(per[s], state.Registration{Server: benchServer(s), ServerAddr: fmt.Sprintf("10.0.0.%d:5060", s+1),
			Endpoint: ext, AOR: ext, Contact: "sip:" + ext + "@192.0.2.1:5060", Source: "192.0.2.1:5060",
			UserAgent: "bench", Expires: exp, Updated: time.Now()})
	}
	for s := range benchServers {
		if err := st.Heartbeat(ctx, benchServer(s), time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := st.ReplaceRegistrations(ctx, benchServer(s), per[s]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchServer(i int) string { return fmt.Sprintf("aim-%c", 'a'+i) }

// startBench serves dialLocal for st and waits until the index (if any)
// holds every registration.
func startBench(b *testing.B, st benchStore, indexRefresh time.Duration) (addr string, envs [][]byte, report func()) {
	b.Helper()
	cfg := testConfig()
	cfg.IndexRefresh = indexRefresh
	cfg.MaxSessions = 100_000
	cfg.HeartbeatTTL = time.Hour
	srv, err := NewAGIServer(cfg, AGIDeps{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	if srv.idx != nil {
		// Time one full reload (what every refresh costs), then let the
		// server's own loop load it.
		t0 := time.Now()
		if err := srv.idx.refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
		reload := time.Since(t0)
		report = func() { b.ReportMetric(float64(reload.Milliseconds()), "index_reload_ms") }
		waitFor(b, "index loaded", func() bool {
			srv.idx.mu.RLock()
			defer srv.idx.mu.RUnlock()
			return srv.idx.size == benchExtensions
		})
	}
	envs = make([][]byte, 1024) // prebuilt environments for random extensions
	for i := range envs {
		envs[i] = scriptEnv(fmt.Sprintf("%d", 100000+rand.IntN(benchExtensions)), "25", "TtWw")
	}
	if report == nil {
		report = func() {}
	}
	return ln.Addr().String(), envs, report
}

// reportFailures reports the share of sessions that did not get a dial
// string (an overloaded host makes lookups time out: dialStatus ERROR); it
// fails the benchmark only when none succeeded.
func reportFailures(b *testing.B, failed, n int64, first any) {
	b.ReportMetric(100*float64(failed)/float64(n), "failed_%")
	if failed > 0 {
		b.Logf("%d of %d sessions failed, first: %v", failed, n, first)
	}
	if failed == n {
		b.Fatal("every session failed")
	}
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// cpuTime is this process's user+system CPU time (client and server both).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func checkStatus(s string) error {
	if s != StatusLocal && s != StatusRemote {
		return fmt.Errorf("dialStatus %q", s)
	}
	return nil
}

// benchOpenLoop offers sessions at rate per second whatever the server's
// speed (open loop), and reports latency from each session's scheduled
// start to its end, so queueing delay counts.
func benchOpenLoop(b *testing.B, st benchStore, indexRefresh time.Duration, rate int) {
	addr, envs, report := startBench(b, st, indexRefresh)
	n := max(b.N, 2*rate) // at least two seconds of load
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := readerPool.Get().(*bufio.Reader)
			defer readerPool.Put(br)
			st, err := fastCall(addr, envs[i%len(envs)], br)
			if err == nil {
				err = checkStatus(st)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			lat[i] = time.Since(due)
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "sessions/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu_us/session")
	report()
	reportFailures(b, failed.Load(), int64(n), firstErr.Load())
}

// benchPeak runs clients concurrent closed-loop clients and reports the
// sessions completed per second.
func benchPeak(b *testing.B, st benchStore, indexRefresh time.Duration, clients int) {
	addr, envs, report := startBench(b, st, indexRefresh)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 1024)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				st, err := fastCall(addr, envs[i%int64(len(envs))], br)
				if err == nil {
					err = checkStatus(st)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sessions/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu_us/session")
	report()
	reportFailures(b, failed.Load(), int64(b.N), firstErr.Load())
}

// BenchmarkDialLocalMem measures the FastAGI path alone (in-memory fake
// store, no index): the ceiling the real stores are compared with.
func BenchmarkDialLocalMem(b *testing.B) {
	b.Run("openloop2000", func(b *testing.B) {
		st := newMemStore()
		fillBench(b, st)
		benchOpenLoop(b, st, 0, 2000)
	})
	b.Run("peak100", func(b *testing.B) {
		st := newMemStore()
		fillBench(b, st)
		benchPeak(b, st, 0, 100)
	})
}
