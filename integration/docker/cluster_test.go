package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The addresses of docker/compose.yaml and compose.sim.yaml.
const (
	ipA     = "10.231.0.10"
	ipB     = "10.231.0.11"
	ipPhone = "10.231.0.50"
)

// project is the compose project of the tests, apart from a user's cluster
// ("doorman"); `task integration:docker` tears it down by this name too.
const project = "doorman-it"

// cluster is the running compose project.
type cluster struct {
	t     *testing.T
	dir   string // docker/
	env   []string
	token string
	http  *http.Client
}

// probeResult is one line of `probe register`.
type probeResult struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

// agiResult is the output of `probe agi`.
type agiResult struct {
	Status string            `json:"status"`
	Vars   map[string]string `json:"vars"`
	Error  string            `json:"error"`
}

func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("DOORMAN_DOCKER") != "1" {
		t.Skip("docker end-to-end test: run `task integration:docker` (builds the images, sets DOORMAN_DOCKER=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: talks to the docker engine and to container addresses on its bridge")
	}
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// up starts the cluster with fresh secrets and registers its teardown; on
// failure the teardown first prints every container's log tail.
func up(t *testing.T) *cluster {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "docker")
	secrets := t.TempDir()
	token := randomHex(t)
	for name, v := range map[string]string{"ami": randomHex(t), "ari": randomHex(t), "api-token": token} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{t: t, dir: dir, token: token, http: &http.Client{Timeout: 3 * time.Second}}
	c.env = append(os.Environ(), "COMPOSE_PROJECT_NAME="+project, "DOORMAN_SECRETS="+secrets,
		"DOORMAN_CONFIG_A="+c.testConfig("doorman-a.yaml"), "DOORMAN_CONFIG_B="+c.testConfig("doorman-b.yaml"))
	c.env = slicesWithout(c.env, "ASTERISK_IMAGE=") // the simulator, whatever the caller's environment
	for _, img := range []string{"doorman/doorman:local", "doorman/asterisk-sim:local", "doorman/probe:local", "doorman/redis:local"} {
		if _, err := run(c.env, "docker", "image", "inspect", img); err != nil {
			t.Fatalf("image %s is missing: run `task docker:build` (nothing can be pulled here)", img)
		}
	}
	// A run killed before its cleanup leaves its project behind.
	_, _ = c.compose("down", "-v", "-t", "1")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.compose("logs", "--no-color", "--tail", "60")
			t.Logf("---- container logs (last 60 lines each) ----\n%s", out)
		}
		if out, err := c.compose("down", "-v", "-t", "1"); err != nil {
			t.Errorf("teardown: %v\n%s", err, out)
		}
	})
	if out, err := c.compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	return c
}

// testConfig copies docker/config/NAME with bans long enough to outlast the
// test (the shipped 30 s could expire while a server restarts), so what is
// tested is the shipped file plus that one key.
func (c *cluster) testConfig(name string) string {
	b, err := os.ReadFile(filepath.Join(c.dir, "config", name))
	if err != nil {
		c.t.Fatal(err)
	}
	b = append(b, "\nintrusion:\n  ban_time: 10m\n"...)
	p := filepath.Join(c.t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cluster) compose(args ...string) (string, error) {
	return run(c.env, filepath.Join(c.dir, "compose.sh"), args...)
}

// container returns the container id of a compose service.
func (c *cluster) container(service string) string {
	c.t.Helper()
	out, err := c.compose("ps", "-q", service)
	id := strings.TrimSpace(out)
	if err != nil || id == "" {
		c.t.Fatalf("no container for service %s: %v %s", service, err, out)
	}
	return id
}

// register sends one REGISTER from a probe service (phone, attacker-N) to
// server ip; answered is false when nothing came back within a second.
// Extra arguments go to probe (e.g. "-local", addr).
func (c *cluster) register(from, ip, user, password string, extra ...string) (res probeResult, answered bool, err error) {
	args := append([]string{"exec", c.container(from), "/usr/local/bin/probe", "register",
		"-server", ip + ":5060", "-user", user, "-password", password, "-timeout", "1s"}, extra...)
	out, err := run(nil, "docker", args...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		return probeResult{}, false, nil
	}
	if err != nil {
		return probeResult{}, false, fmt.Errorf("probe register from %s to %s: %w: %s", from, ip, err, out)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &res); err != nil {
		return res, true, fmt.Errorf("probe register output %q: %w", out, err)
	}
	return res, true, nil
}

// agi runs AGI(appData) in server's network namespace, as its dialplan would.
func (c *cluster) agi(server, appData string) (agiResult, error) {
	out, err := run(nil, "docker", "run", "--rm", "--network", "container:"+c.container(server),
		"--cap-drop", "ALL", "--read-only", "doorman/probe:local", "agi", appData)
	var r agiResult
	if err != nil {
		return r, fmt.Errorf("probe agi in %s: %w: %s", server, err, out)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		return r, fmt.Errorf("probe agi output %q: %w", out, err)
	}
	return r, nil
}

// api GETs path from the agent of server ip into v (nil: status only).
func (c *cluster) api(ip, path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+ip+":9485"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return c.do(req, v)
}

// control calls the simulator's control API on server ip.
func (c *cluster) control(method, ip, path string, body, v any) error {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+ip+":8089"+path, r)
	if err != nil {
		return err
	}
	return c.do(req, v)
}

func (c *cluster) do(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// healthy waits until the agent of server ip reports every part ok.
func (c *cluster) healthy(ctx context.Context, ip string) error {
	return eventually(ctx, func() error {
		req, err := http.NewRequest(http.MethodGet, "http://"+ip+":9485/healthz", nil)
		if err != nil {
			return err
		}
		return c.do(req, nil)
	})
}

// running reports whether a service's container is up (not restarting).
func (c *cluster) running(service string) (bool, error) {
	out, err := run(nil, "docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", c.container(service))
	if err != nil {
		return false, err
	}
	f := strings.Fields(out)
	return len(f) == 2 && f[0] == "true" && f[1] == "0", nil
}

func run(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// eventually calls f until it returns nil or ctx ends; it returns f's last
// error on timeout.
func eventually(ctx context.Context, f func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %w: last error: %w", ctx.Err(), err)
		case <-time.After(wait):
		}
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}

func randomHex(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
