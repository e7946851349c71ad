package finder

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/integration/measure"
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
func startBench(b *testing.B, st benchStore, indexed bool) (addr string, report func()) {
	b.Helper()
	cfg := testConfig()
	cfg.Index = indexed
	cfg.MaxSessions = 100_000
	cfg.HeartbeatTTL = time.Hour
	srv, err := NewAGIServer(cfg, AGIDeps{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	if srv.idx != nil {
		// The index loads at start: that is what a full reload (after a gap
		// in the feed) costs.
		t0 := time.Now()
		waitFor(b, "index loaded", func() bool {
			return srv.idx.tab.Load() != nil && srv.idx.size.Load() == benchExtensions
		})
		reload := time.Since(t0)
		report = func() { b.ReportMetric(float64(reload.Milliseconds()), "index_reload_ms") }
	}
	// Warm the store up (the fake builds its AOR map on the first lookup,
	// Redis loads its script) so that the first sessions do not pay for it.
	if _, err := st.LookupAOR(context.Background(), "100000"); err != nil {
		b.Fatal(err)
	}
	if report == nil {
		report = func() {}
	}
	return ln.Addr().String(), report
}

// The load comes from a second process (this test binary re-run as
// TestBenchClientProcess), so that the benchmark process's CPU time is the
// server's alone: rusage of this process is the server, of the child the
// client, and /proc of redis-server the store.

const benchClientEnv = "DOORMAN_FINDER_BENCH_CLIENT"

// clientJob is what the client process is asked to do.
type clientJob struct {
	Addr    string `json:"addr"`
	N       int    `json:"n"`       // sessions
	Rate    int    `json:"rate"`    // > 0: open loop at this many sessions/s
	Clients int    `json:"clients"` // closed loop: this many concurrent clients
}

// clientResult is what it reports (one JSON line after clientResultMark).
type clientResult struct {
	Seconds  float64 `json:"seconds"`
	P50, P99 float64 // ms from each session's due time, open loop only
	Max      float64
	LagP99   float64 // ms from due time to the client starting the session
	Failed   int64   `json:"failed"`
	FirstErr string  `json:"first_err"`
}

const clientResultMark = "BENCHCLIENT "

// runClient runs job in a child process and returns its result, the
// server's CPU time (this process) and the client's.
func runClient(b *testing.B, job clientJob) (res clientResult, server, client time.Duration) {
	b.Helper()
	spec, _ := json.Marshal(job)
	args := []string{"-test.run=^TestBenchClientProcess$", "-test.count=1"}
	if prof := os.Getenv(benchClientEnv + "_CPUPROFILE"); prof != "" { // to profile the client too
		args = append(args, "-test.cpuprofile="+prof)
	}
	cmd := exec.Command(os.Args[0], args...)
	if cpus := os.Getenv(benchClientEnv + "_CPUS"); cpus != "" { // the client on its own core(s), as on another machine
		cmd = exec.Command("taskset", append([]string{"-c", cpus, os.Args[0]}, args...)...)
	}
	cmd.Env = append(os.Environ(), benchClientEnv+"="+string(spec))
	if n := os.Getenv(benchClientEnv + "_GOMAXPROCS"); n != "" { // the client's own, apart from the server's
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+n)
	}
	cmd.Stderr = os.Stderr
	cpu0 := measure.CPUSelf()
	out, err := cmd.Output()
	server = measure.CPUSelf() - cpu0
	if err != nil {
		b.Fatalf("benchmark client: %v\n%s", err, out)
	}
	client = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, clientResultMark); ok {
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				b.Fatal(err)
			}
			return res, server, client
		}
	}
	b.Fatalf("benchmark client said nothing:\n%s", out)
	return
}

// TestBenchClientProcess is the benchmarks' FastAGI load generator; it runs
// only as their child process.
func TestBenchClientProcess(t *testing.T) {
	spec := os.Getenv(benchClientEnv)
	if spec == "" {
		t.Skip("the benchmarks' client process")
	}
	var job clientJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	res, err := loadClient(job)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res)
	fmt.Println(clientResultMark + string(out))
}

// benchEnvs returns AGI environments for random extensions, each on a
// random server.
func benchEnvs() [][]byte {
	envs := make([][]byte, 1024)
	for i := range envs {
		envs[i] = scriptEnv(strconv.Itoa(100000+rand.IntN(benchExtensions)), "25", "TtWw")
	}
	return envs
}

var (
	replies200   = []byte("200 result=1\n200 result=1\n200 result=1\n")
	statusPrefix = []byte(`SET VARIABLE "dialStatus" "`)
)

// report prints what the server, the client and Redis spent.
func reportRun(b *testing.B, n int, res clientResult, server, client, redis time.Duration) {
	perSession := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(float64(n)/res.Seconds, "sessions/s")
	b.ReportMetric(perSession(server), "server_cpu_us/session")
	b.ReportMetric(perSession(client), "client_cpu_us/session")
	if redis > 0 {
		b.ReportMetric(perSession(redis), "redis_cpu_us/session")
	}
	reportFailures(b, res.Failed, int64(n), res.FirstErr)
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

// benchOpenLoop offers sessions at rate per second whatever the server's
// speed (open loop), and reports latency from each session's scheduled
// start to its end, so queueing delay counts.
func benchOpenLoop(b *testing.B, st benchStore, redisPid int, indexed bool, rate int) {
	addr, report := startBench(b, st, indexed)
	n := max(b.N, 2*rate) // at least two seconds of load
	b.ResetTimer()
	r0 := measure.CPUOf(redisPid)
	res, server, client := runClient(b, clientJob{Addr: addr, N: n, Rate: rate})
	redis := measure.CPUOf(redisPid) - r0
	b.StopTimer()
	b.ReportMetric(res.P50, "p50_ms")
	b.ReportMetric(res.P99, "p99_ms")
	b.ReportMetric(res.Max, "max_ms")
	b.ReportMetric(res.LagP99, "client_lag_p99_ms")
	reportRun(b, n, res, server, client, redis)
	report()
}

// benchPeak runs clients concurrent closed-loop clients and reports the
// sessions completed per second.
func benchPeak(b *testing.B, st benchStore, redisPid int, indexed bool, clients int) {
	addr, report := startBench(b, st, indexed)
	b.ResetTimer()
	r0 := measure.CPUOf(redisPid)
	res, server, client := runClient(b, clientJob{Addr: addr, N: b.N, Clients: clients})
	redis := measure.CPUOf(redisPid) - r0
	b.StopTimer()
	reportRun(b, b.N, res, server, client, redis)
	report()
}

// BenchmarkDialLocalMem measures the FastAGI path alone (in-memory fake
// store, no index): the ceiling the real stores are compared with.
func BenchmarkDialLocalMem(b *testing.B) {
	b.Run("openloop2000", func(b *testing.B) {
		st := newMemStore()
		fillBench(b, st)
		benchOpenLoop(b, st, 0, false, 2000)
	})
	b.Run("peak100", func(b *testing.B) {
		st := newMemStore()
		fillBench(b, st)
		benchPeak(b, st, 0, false, 100)
	})
}
