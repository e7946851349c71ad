package ariproxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim"
)

const (
	ariUser, ariPass = "doorman", "ari-secret"
	app              = "doorman"
	natsBinary       = "/usr/sbin/nats-server"
)

var (
	buildOnce sync.Once
	proxyBin  string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proxyBinary builds the ari-proxy server once (its main package is the
// module root of github.com/CyCoreSystems/ari-proxy/v5, required in go.mod).
func proxyBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "doorman-ariproxy-bin-")
		if buildErr != nil {
			return
		}
		proxyBin = filepath.Join(binDir, "ari-proxy")
		out, err := exec.Command("go", "build", "-o", proxyBin, "github.com/CyCoreSystems/ari-proxy/v5").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ari-proxy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return proxyBin
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a child process with its output kept for failure reports.
type proc struct {
	name string
	args []string
	env  []string
	cmd  *exec.Cmd
	out  *syncBuf
	exit chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, env: env, out: &syncBuf{}}
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(p.name), tail(p.out.String(), 4000))
		}
	})
	return p
}

func (p *proc) start(t testing.TB) {
	t.Helper()
	p.cmd = exec.Command(p.name, p.args...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	p.exit = make(chan struct{})
	go func(cmd *exec.Cmd, exit chan struct{}) { _ = cmd.Wait(); close(exit) }(p.cmd, p.exit)
}

// stop kills the process (by its own pid) and waits for it.
func (p *proc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exit
}

// signal sends sig; for SIGSTOP it returns only once the kernel shows the
// process stopped, since delivery is asynchronous and a loaded machine can
// let the proxy answer one more request in between.
func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	if sig != syscall.SIGSTOP {
		return
	}
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	for i := 0; i < 2000; i++ {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// The state follows the parenthesised command name.
		if j := bytes.LastIndexByte(b, ')'); j >= 0 && j+2 < len(b) && b[j+2] == 'T' {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// natsServer is Debian's nats-server on a loopback port.
type natsServer struct {
	*proc
	URL  string
	addr string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	if _, err := os.Stat(natsBinary); err != nil {
		t.Skipf("%s not installed (apt-get install nats-server)", natsBinary)
	}
	port := freePort(t)
	n := &natsServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	n.URL = "nats://" + n.addr
	n.proc = startProc(t, nil, natsBinary, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	waitTCP(t, n.addr)
	return n
}

func waitTCP(t testing.TB, addr string) {
	t.Helper()
	eventually(t, "listening on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// server is one simulated Asterisk with its ari-proxy.
type server struct {
	name, entity string
	sim          *asterisksim.Sim
	proxy        *proc
}

// startServer starts a simulator with endpoints 1001..1000+phones and an
// ari-proxy in front of it on natsURL.
func startServer(t testing.TB, natsURL, name, entity string, phones int) *server {
	t.Helper()
	var exts []string
	for i := 1; i <= phones; i++ {
		exts = append(exts, strconv.Itoa(1000+i))
	}
	return startServerWith(t, natsURL, name, entity, exts)
}

// startServerWith starts a simulator with the PJSIP endpoints exts.
func startServerWith(t testing.TB, natsURL, name, entity string, exts []string) *server {
	t.Helper()
	eps := map[string]string{}
	for _, e := range exts {
		eps[e] = "pw"
	}
	sim, err := asterisksim.New(asterisksim.Config{SystemName: name, EntityID: entity, HTTPAddr: "127.0.0.1:0",
		Endpoints: eps, ARIUsers: map[string]string{ariUser: ariPass}}, testLog(t).With("sim", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	s := &server{name: name, entity: entity, sim: sim}
	if natsURL != "" {
		s.proxy = startProxy(t, natsURL, sim)
	}
	return s
}

// startProxy runs ari-proxy for sim; HOME is a temp dir so no
// ~/.ari-proxy.yaml is read, and the environment carries nothing else.
func startProxy(t testing.TB, natsURL string, sim *asterisksim.Sim) *proc {
	t.Helper()
	bin := proxyBinary(t)
	http := "http://" + sim.HTTPAddr() + "/ari"
	env := []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	return startProc(t, env, bin, "--messagebus.url", natsURL, "--ari.application", app,
		"--ari.username", ariUser, "--ari.password", ariPass,
		"--ari.http_url", http, "--ari.websocket_url", "ws://"+sim.HTTPAddr()+"/ari/events")
}

func (s *server) url() string { return "http://" + s.sim.HTTPAddr() + "/ari" }

func (s *server) stasis(name string) string { return s.sim.Backend().StasisStates()[name] }

// eventually polls cond until it holds or 20 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
