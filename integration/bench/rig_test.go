package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
	"github.com/asterisksupport/doorman/integration/harness"
)

const (
	apiToken  = "bench-token"
	amiSecret = "bench-ami-secret"
	// attackNet holds every attacker source address; servers route it to
	// their bridge interface (the bed's own /24 holds the hosts).
	attackNet = "198.18.64.0/18"
)

// rig is the bed: a doorman server (simulator + agent), a fail2ban server
// (simulator + fail2ban on its security log), Redis, and an attacker host.
type rig struct {
	tb       testing.TB
	bed      *harness.Bed
	bin      string
	redis    *harness.Redis
	dm, f2b  *harness.Host
	attacker *harness.Host
	dmDir    string
	f2bLog   string
	agent    *harness.Proc
	amiAddr  string // "" = the simulator's 127.0.0.1:5038
	oneCore  bool   // run the agent with GOMAXPROCS=1
	noJobs   bool   // run the agent with every job off: it only reads AMI
	backend  string // the agent's firewall backend; "" = nftables
	fail2ban *harness.Fail2ban
}

func newRig(b *testing.B) *rig {
	b.Helper()
	harness.RequireRoot(b)
	r := &rig{tb: b, bed: harness.New(b), bin: harness.Binaries(b)}
	r.dm = r.bed.AddHost("doorman")
	r.f2b = r.bed.AddHost("fail2ban")
	r.attacker = r.bed.AddHost("attacker")
	r.redis = r.bed.AddHost("redis").StartRedis(b)
	// Routed through the attacker's main address, not "dev eth0": one
	// neighbour entry instead of thousands (the kernel's neighbour table,
	// gc_thresh3 1024 by default and not per namespace, drops replies
	// beyond that).
	for _, h := range []*harness.Host{r.dm, r.f2b} {
		h.MustRun("ip", "route", "add", attackNet, "via", r.attacker.IPv4.String())
	}
	r.dmDir = b.TempDir()
	// The doorman server's AMI user has asterisk-conf/manager.conf's
	// event filter; fail2ban reads the security log, which is unfiltered.
	r.startSim(r.dm, r.dmDir, "-ami-eventfilter", "doorman:action(exclude),name(ChallengeSent)")
	f2bDir := b.TempDir()
	r.startSim(r.f2b, f2bDir)
	r.f2bLog = filepath.Join(f2bDir, "security")
	return r
}

func (r *rig) startSim(h *harness.Host, dir string, extra ...string) {
	r.tb.Helper()
	args := append([]string{filepath.Join(r.bin, "asterisk-sim"),
		"-system-name", h.Name, "-ami", "127.0.0.1:5038", "-sip", "0.0.0.0:5060", "-http", "127.0.0.1:8088",
		"-ami-user", "doorman:" + amiSecret, "-endpoint", "1001:pw1001",
		"-security-log", filepath.Join(dir, "security")}, extra...)
	h.Start(r.tb, h.Name+"-sim", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.WaitTCP(ctx, "127.0.0.1:5038"); err != nil {
		r.tb.Fatalf("bench: simulator on %s not up: %v", h.Name, err)
	}
}

// addAttackers gives the attacker host n addresses of attackNet starting at
// first, in one `ip -batch` (thousands of `ip addr add` calls would take
// minutes).
func (r *rig) addAttackers(first netip.Addr, n int) []netip.Addr {
	r.tb.Helper()
	var buf bytes.Buffer
	out := make([]netip.Addr, 0, n)
	a := first
	for i := 0; i < n; i++ {
		fmt.Fprintf(&buf, "addr add %s/32 dev eth0\n", a)
		out = append(out, a)
		a = a.Next()
	}
	cmd := exec.Command("ip", "-n", r.attacker.NS, "-batch", "-")
	cmd.Stdin = &buf
	if o, err := cmd.CombinedOutput(); err != nil {
		r.tb.Fatalf("bench: add %d attacker addresses: %v: %s", n, err, o)
	}
	return out
}

// phones opens one SIP UA per source address (in one namespace switch) that
// register at server as 1001 with a wrong password.
func (r *rig) phones(srcs []netip.Addr, server *harness.Host, timeout time.Duration) []*sipua.Phone {
	r.tb.Helper()
	ps := make([]*sipua.Phone, 0, len(srcs))
	err := r.attacker.Do(func() error {
		for _, a := range srcs {
			p, err := sipua.New(context.Background(), sipua.Config{
				Server: net.JoinHostPort(server.IPv4.String(), "5060"), LocalAddr: net.JoinHostPort(a.String(), "0"),
				User: "1001", Password: "wrong", Timeout: timeout})
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		return nil
	})
	if err != nil {
		r.tb.Fatalf("bench: attacker phones: %v", err)
	}
	r.tb.Cleanup(func() {
		for _, p := range ps {
			p.Close()
		}
	})
	return ps
}

// fail makes one failed attempt (REGISTER, challenge, wrong answer) in a new
// dialog and reports whether its final 401 came back, and when.
func fail(p *sipua.Phone, newDialog bool) (bool, time.Time, error) {
	if newDialog {
		p.NewDialog()
	}
	resp, err := p.Register(context.Background())
	at := time.Now()
	// doorman drops; fail2ban's action rejects (ICMP port unreachable).
	if err == sipua.ErrTimeout || errors.Is(err, syscall.ECONNREFUSED) {
		return false, at, nil
	}
	if err != nil {
		return false, at, err
	}
	if resp.Status != 401 {
		return false, at, fmt.Errorf("bench: wrong password got %d, want 401", resp.Status)
	}
	return true, at, nil
}

var agentConfig = template.Must(template.New("cfg").Parse(`
server:
  name: doorman
  sip_addr: "{{.IP}}:5060"
  cluster: ["{{.IP}}"]
jobs: {intrusion: {{not .NoJobs}}, finder: false, blf: false}
ami: {addr: "{{.AMI}}", username: doorman, secret: "{{.AMISecret}}"}
store:
  embedded_path: "{{.Dir}}/state.db"
  redis: {addrs: ["{{.Redis}}"]}
firewall: {backend: {{.Backend}}, table: doorman}
api: {listen: "127.0.0.1:9485", token: "{{.Token}}"}
log_level: info
intrusion:
  threshold: {{.Threshold}}
  ban_time: 10m
  permanent_after: 0
  never_ban: [{{range $i, $a := .Trusted}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
`))

// startAgent (re)starts the doorman agent with threshold (on one core,
// GOMAXPROCS=1, if r.oneCore).
func (r *rig) startAgent(threshold int, trusted ...string) {
	r.tb.Helper()
	r.startAgentAsync(threshold, trusted...)
	r.waitHealthy()
}

// startAgentAsync is startAgent without waiting for health.
func (r *rig) startAgentAsync(threshold int, trusted ...string) {
	r.tb.Helper()
	ami := r.amiAddr
	if ami == "" {
		ami = "127.0.0.1:5038"
	}
	if r.agent != nil {
		r.agent.Stop()
	}
	backend := r.backend
	if backend == "" {
		backend = "nftables"
	}
	var buf bytes.Buffer
	if err := agentConfig.Execute(&buf, map[string]any{"Backend": backend, "IP": r.dm.IPv4, "AMISecret": amiSecret, "Dir": r.dmDir,
		"Redis": r.redis.Addr, "Token": apiToken, "Threshold": threshold, "Trusted": trusted, "AMI": ami, "NoJobs": r.noJobs}); err != nil {
		r.tb.Fatal(err)
	}
	cfg := filepath.Join(r.dmDir, "doorman.yaml")
	if err := os.WriteFile(cfg, buf.Bytes(), 0o600); err != nil {
		r.tb.Fatal(err)
	}
	procs := "GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU())
	if r.oneCore {
		procs = "GOMAXPROCS=1"
	}
	r.agent = r.dm.Start(r.tb, "doorman-agent", "env", procs, filepath.Join(r.bin, "doorman"), "agent", "-c", cfg)
}

func (r *rig) waitHealthy() {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := harness.Eventually(ctx, func() error {
		if ok, err := r.agent.Exited(); ok {
			r.tb.Fatalf("bench: agent exited: %v\n%s", err, r.agent.Output())
		}
		resp, err := r.dm.HTTPClient(2 * time.Second).Get("http://127.0.0.1:9485/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		want := `"intrusion":"ok"`
		if r.noJobs {
			want = `"ami":"ok"`
		}
		if !strings.Contains(string(body), want) {
			return fmt.Errorf("not healthy: %s", body)
		}
		return nil
	})
	if err != nil {
		r.tb.Fatalf("bench: agent not healthy: %v", err)
	}
}

// metrics sums the agent's metric samples by name (labels folded).
func (r *rig) metrics() (map[string]float64, error) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9485/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := r.dm.HTTPClient(3 * time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

// histQuantile reads the agent's histogram name and returns the upper
// bound of the bucket holding quantile q (e.g. 0.99), in seconds.
func (r *rig) histQuantile(name string, q float64) (float64, error) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9485/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := r.dm.HTTPClient(3 * time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	type bucket struct{ le, n float64 }
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, cnt, _ := strings.Cut(rest, `"} `)
		l, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(cnt, 64)
		if err1 == nil && err2 == nil {
			bs = append(bs, bucket{l, n})
		}
	}
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, fmt.Errorf("bench: no %s samples", name)
	}
	total := bs[len(bs)-1].n
	for _, b := range bs {
		if b.n >= q*total {
			return b.le, nil
		}
	}
	return bs[len(bs)-1].le, nil
}

// pidOf finds the process named comm running in h's namespace.
func pidOf(h *harness.Host, comm string) (int, error) {
	out, err := exec.Command("ip", "netns", "pids", h.NS).Output()
	if err != nil {
		return 0, err
	}
	for _, f := range strings.Fields(string(out)) {
		c, err := os.ReadFile("/proc/" + f + "/comm")
		if err == nil && strings.TrimSpace(string(c)) == comm {
			return strconv.Atoi(f)
		}
	}
	return 0, fmt.Errorf("bench: no %s process in %s", comm, h.Name)
}

// cpuSeconds is the CPU time of pid's threads plus that of its waited-for
// children (fail2ban runs `nft` for each ban). The threads' time is their
// schedstat run time, to the nanosecond: utime and stime count 10 ms
// ticks, too coarse for a round that costs doorman 0.1 s. A thread that
// exited is missed (the agent's and fail2ban's threads live as long as
// they do); the children's time is in ticks, as only stat has it.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After "pid (comm) ": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
	var ticks float64
	for _, i := range []int{16, 17} {
		v, err := strconv.ParseFloat(f[i-3], 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/stat field %d: %w", pid, i, err)
		}
		ticks += v
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: threads of %d: %w", pid, err)
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread just exited
		}
		run, _, _ := strings.Cut(string(b), " ")
		v, err := strconv.ParseInt(run, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s: %w", t, err)
		}
		ns += v
	}
	if ns == 0 { // no threads, or a kernel without schedstats (it prints zeros)
		return 0, fmt.Errorf("bench: no schedstat run time for %d", pid)
	}
	return float64(ns)/1e9 + ticks/100, nil // USER_HZ
}

// ctxSwitches sums the voluntary context switches of pid's threads: each
// is a thread going to sleep, so it counts wake-ups, which cost CPU the
// busier the machine is. Less noisy than CPU seconds on a shared machine.
func ctxSwitches(pid int) int64 {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// logf prints progress at once on stdout (a benchmark's log is trimmed to
// 10 lines and shown only at its end).
func (r *rig) logf(format string, a ...any) {
	fmt.Printf("    "+format+"\n", a...)
}

// perfEnv names a directory: when set, the doorman phases are recorded with
// `perf record -g` there (the agent has no pprof endpoint), for
// `perf report -i <file>`.
const perfEnv = "DOORMAN_BENCH_PERF"

// perf records pid until the returned func is called; a no-op unless
// perfEnv is set.
func (r *rig) perf(pid int, name string) func() {
	dir := os.Getenv(perfEnv)
	if dir == "" || !strings.HasPrefix(name, "doorman") {
		return func() {}
	}
	out := filepath.Join(dir, name+".perf")
	cmd := exec.Command("perf", "record", "-F", "2000", "-g", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		r.logf("perf: %v", err)
		return func() {}
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		r.logf("perf: %s", out)
	}
}
