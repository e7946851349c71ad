// Package e2e runs doorman end to end: real doorman agents beside simulated
// Asterisk servers, each in its own network namespace, with a real Redis on
// another host, real kernel firewall sets, and real SIP/AMI traffic from
// attacker and phone hosts.
//
// With DOORMAN_E2E_TARGETS naming a targets file (targets.example.yaml) the
// same tests run against real Asterisk servers and the agents beside them:
// target_test.go holds the two sides (simulator control API, or AMI and ARI),
// and steps a real deployment cannot do skip, saying why.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
	"github.com/asterisksupport/doorman/integration/harness"
)

const (
	apiToken  = "e2e-token"
	amiSecret = "e2e-ami-secret"
	ariPass   = "e2e-ari-pass"
)

// opts shape a cluster of simulators; with real targets only servers
// counts (the agents' own configuration decides the rest).
type opts struct {
	servers   int
	backend   string // nftables | ipset
	noRedis   bool
	trusted   []string // extra never_ban entries
	banTime   string
	permAfter int
	extra     string // appended YAML
	// exposed makes the agents' API and the simulators' ARI listen on the
	// bed's addresses, so that a client namespace can use them as real
	// targets (TestRealModeAgainstSimulators).
	exposed bool
}

type cluster struct {
	t       *testing.T
	real    *harness.Targets // nil: simulators started by the suite
	bed     *harness.Bed     // simulators only
	bin     string
	servers []*server
	redis   *harness.Redis // simulators only
	opts    opts
}

// server is one Asterisk (simulated or real) and the doorman agent beside it.
type server struct {
	c    *cluster
	name string
	ast  asterisk

	sipAddr string // the agent's server.sip_addr, and where IPv4 clients send SIP
	sip6    string // SIP over IPv6; "" when unknown
	amiAddr string // AMI as the clients reach it
	amiUser string // an AMI user the clients may try (and fail) to log in as
	apiURL  string // the agent's HTTP API
	token   string
	fastAGI string // the agent's FastAGI address as Asterisk reaches it
	httpc   func(timeout time.Duration) *http.Client

	// simulators only
	host    *harness.Host
	dir     string
	sim     *harness.Proc
	agent   *harness.Proc
	cfgPath string
}

func newCluster(t *testing.T, o opts) *cluster {
	t.Helper()
	if o.servers == 0 {
		o.servers = 2
	}
	if tg := loadTargets(t); tg != nil {
		return newRealCluster(t, o, tg)
	}
	harness.RequireRoot(t)
	if o.backend == "" {
		o.backend = "nftables"
	}
	if o.banTime == "" {
		o.banTime = "3s"
	}
	c := &cluster{t: t, bed: harness.New(t), bin: harness.Binaries(t), opts: o}
	for i := 0; i < o.servers; i++ {
		name := fmt.Sprintf("srv%c", 'a'+i)
		h := c.bed.AddHost(name)
		c.servers = append(c.servers, &server{c: c, name: name, host: h, dir: t.TempDir(),
			ast:     &simAsterisk{name: name, host: h},
			sipAddr: net.JoinHostPort(h.IPv4.String(), "5060"), sip6: net.JoinHostPort(h.IPv6.String(), "5060"),
			amiAddr: net.JoinHostPort(h.IPv4.String(), "5038"), amiUser: "doorman",
			apiURL: "http://127.0.0.1:9485", token: apiToken, fastAGI: "127.0.0.1:4573", httpc: h.HTTPClient})
	}
	if !o.noRedis {
		c.redis = c.bed.AddHost("redis").StartRedis(t)
	}
	for _, s := range c.servers {
		s.startSim()
	}
	for _, s := range c.servers {
		s.writeConfig()
		s.startAgent()
	}
	for _, s := range c.servers {
		s.waitHealthy("intrusion")
	}
	return c
}

// newRealCluster uses the first o.servers servers of the targets file and
// the agents beside them; it starts nothing.
func newRealCluster(t *testing.T, o opts, tg *harness.Targets) *cluster {
	t.Helper()
	if len(tg.Servers) < o.servers {
		t.Skipf("real targets: this test needs %d servers; the targets file lists %d", o.servers, len(tg.Servers))
	}
	c := &cluster{t: t, real: tg, opts: o}
	plain := func(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }
	for i, ts := range tg.Servers[:o.servers] {
		c.servers = append(c.servers, &server{c: c, name: ts.Name, ast: newRealAsterisk(t, i, ts),
			sipAddr: ts.SIP.UDP, sip6: ts.SIP.UDP6, amiAddr: ts.AMI.Addr, amiUser: ts.AMI.Username,
			apiURL: strings.TrimSuffix(ts.Agent.API, "/"), token: ts.Agent.Token, fastAGI: ts.Agent.FastAGI, httpc: plain})
	}
	for _, s := range c.servers {
		s.waitHealthy("intrusion")
	}
	return c
}

// password is the password of ext's account on every server.
func (c *cluster) password(ext string) string {
	if c.real != nil {
		return c.real.Accounts[ext].Password
	}
	return "pw" + ext
}

// requireSim skips t with real targets: what needs names something only
// the suite's own bed can do.
func (c *cluster) requireSim(t *testing.T, what string) {
	t.Helper()
	if c.real != nil {
		t.Skipf("real targets: %s needs the suite's own bed (simulators, agents and Redis it started)", what)
	}
}

func (s *server) startSim() {
	t := s.c.t
	t.Helper()
	n := len(s.name)
	s.sim = s.host.Start(t, s.name+"-sim", filepath.Join(s.c.bin, "asterisk-sim"),
		"-system-name", s.name, "-entity-id", fmt.Sprintf("02:00:00:00:00:%02x", s.name[n-1]),
		"-ami", "0.0.0.0:5038", "-sip", "[::]:5060", "-http", s.listen("8088"), "-control", "127.0.0.1:8089",
		"-ami-user", "doorman:"+amiSecret, "-ari-user", "doorman:"+ariPass,
		"-endpoint", "1001:pw1001", "-endpoint", "1002:pw1002", "-endpoint", "1003:pw1003",
		"-security-log", filepath.Join(s.dir, "security"), "-state-dir", filepath.Join(s.dir, "astdb"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.host.WaitTCP(ctx, "127.0.0.1:5038"); err != nil {
		t.Fatalf("%s: simulator AMI not up: %v", s.name, err)
	}
}

var configTemplate = template.Must(template.New("cfg").Parse(`
server:
  name: {{.Name}}
  sip_addr: "{{.IP}}:5060"
  cluster: [{{range $i, $a := .Cluster}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
  heartbeat_ttl: 3s
ami: {addr: "127.0.0.1:5038", username: doorman, secret: "{{.AMISecret}}"}
ari: {url: "http://127.0.0.1:8088/ari", username: doorman, password: "{{.ARIPass}}", application: doorman}
store:
  embedded_path: "{{.Dir}}/state.db"
{{- if .Redis}}
  redis: {addrs: ["{{.Redis}}"]}
{{- end}}
firewall: {backend: {{.Backend}}, table: doorman}
api: {listen: "{{.APIListen}}", token: "{{.Token}}"}
log_level: debug
intrusion:
  ban_time: {{.BanTime}}
  permanent_after: {{.PermAfter}}
  reconcile_interval: 500ms
  never_ban: [{{range $i, $a := .Trusted}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
finder:
  listen: "0.0.0.0:4573"
{{.Extra}}
`))

func (s *server) writeConfig() {
	t := s.c.t
	var cluster []string
	for _, o := range s.c.servers {
		cluster = append(cluster, o.host.IPv4.String(), o.host.IPv6.String())
	}
	redis := ""
	if s.c.redis != nil {
		redis = s.c.redis.Addr
	}
	perm := s.c.opts.permAfter
	var b bytes.Buffer
	err := configTemplate.Execute(&b, map[string]any{
		"Name": s.name, "IP": s.host.IPv4, "Cluster": cluster, "AMISecret": amiSecret, "ARIPass": ariPass,
		"Dir": s.dir, "Redis": redis, "Backend": s.c.opts.backend, "Token": apiToken, "BanTime": s.c.opts.banTime,
		"PermAfter": perm, "Trusted": s.c.opts.trusted, "Extra": s.c.opts.extra, "APIListen": s.listen("9485"),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.cfgPath = filepath.Join(s.dir, "doorman.yaml")
	if err := os.WriteFile(s.cfgPath, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// listen is where a simulator-side service listens: loopback, or every
// address when the cluster is exposed.
func (s *server) listen(port string) string {
	if s.c.opts.exposed {
		return "0.0.0.0:" + port
	}
	return "127.0.0.1:" + port
}

func (s *server) startAgent() {
	s.c.t.Helper()
	s.agent = s.host.Start(s.c.t, s.name+"-doorman", filepath.Join(s.c.bin, "doorman"), "agent", "-c", s.cfgPath)
}

// restartAgent stops the agent (SIGTERM) and starts a new one.
func (s *server) restartAgent(t *testing.T) {
	t.Helper()
	s.c.requireSim(t, "restarting the doorman agent")
	s.agent.Stop()
	s.startAgent()
	s.waitHealthy("intrusion")
}

// killAgent kills the agent as a crash would.
func (s *server) killAgent(t *testing.T) {
	t.Helper()
	s.c.requireSim(t, "killing the doorman agent")
	s.agent.Kill()
}

// api calls the agent's HTTP API (from inside the server's namespace on
// simulators).
func (s *server) api(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.apiURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.httpc(3 * time.Second).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (s *server) waitHealthy(jobs ...string) {
	t := s.c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := harness.Eventually(ctx, func() error {
		if s.agent != nil {
			if ok, err := s.agent.Exited(); ok {
				t.Fatalf("%s: agent exited: %v", s.name, err)
			}
		}
		h, err := s.healthz()
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if h[j] != "ok" {
				return fmt.Errorf("%s: %s", j, h[j])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: agent not healthy: %v", s.name, err)
	}
}

// sipTarget is the server's SIP address as the clients reach it (IPv4 or
// IPv6); t is skipped when a real server has no IPv6 address in the file.
func (s *server) sipTarget(t *testing.T, v6 bool) string {
	t.Helper()
	if !v6 {
		return s.sipAddr
	}
	if s.sip6 == "" {
		t.Skipf("real targets: the targets file gives no sip.udp6 for %s", s.name)
	}
	return s.sip6
}

// phone makes a SIP user agent on cl, bound to local (ip, port 0 = any).
func phone(t *testing.T, cl *client, local, server, user, password string) *sipua.Phone {
	t.Helper()
	var p *sipua.Phone
	err := cl.do(func() (err error) {
		p, err = sipua.New(context.Background(), sipua.Config{Server: server, LocalAddr: net.JoinHostPort(local, "0"),
			User: user, Password: password, Timeout: time.Second})
		return err
	})
	if err != nil {
		t.Fatalf("phone in %s: %v", cl.name, err)
	}
	tg := loadTargets(t)
	t.Cleanup(func() {
		if tg != nil && password == tg.Accounts[user].Password {
			// A real server keeps a contact after the test: take it back.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, _ = p.Unregister(ctx)
			cancel()
		}
		p.Close()
	})
	return p
}

// registerPhone registers the suite's phone for ext on s from cl and keeps
// it answering calls until the whole test ends, not only the subtest: the
// device state its calls carry outlives subtests, as a phone's does. Real
// servers call it to set PJSIP/<ext> (setDevice); simulators set states
// through their control API and never call it.
func (s *server) registerPhone(t *testing.T, cl *client, ext string) *sipua.Phone {
	t.Helper()
	var p *sipua.Phone
	err := cl.do(func() (err error) {
		p, err = sipua.New(context.Background(), sipua.Config{Server: s.sipTarget(t, false),
			LocalAddr: net.JoinHostPort(cl.addr.String(), "0"), User: ext, Password: s.c.password(ext), Timeout: time.Second})
		return err
	})
	if err != nil {
		t.Fatalf("phone %s in %s: %v", ext, cl.name, err)
	}
	register(t, p, ext+" -> "+s.name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx); close(done) }()
	s.ast.addPhone(ext, p)
	real := s.c.real != nil
	s.c.t.Cleanup(func() {
		s.ast.addPhone(ext, nil)
		// Calls first (Serve reads the answers to the BYEs), then the
		// contact a real server would keep.
		hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer hcancel()
		for _, c := range p.Calls() {
			_ = c.Hangup(hctx)
		}
		cancel()
		<-done
		if real {
			_, _ = p.Unregister(hctx)
		}
		p.Close()
	})
	return p
}

// answered reports whether a REGISTER from p gets any response.
func answered(p *sipua.Phone) (int, error) {
	p.NewDialog()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := p.Register(ctx)
	if err != nil {
		return 0, err
	}
	return resp.Status, nil
}

// waitDropped waits until p's REGISTERs get no answer (the kernel drops them).
func waitDropped(t *testing.T, p *sipua.Phone, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.Eventually(ctx, func() error {
		if st, err := answered(p); !errors.Is(err, sipua.ErrTimeout) {
			return fmt.Errorf("still answered (status %d, err %v)", st, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: not dropped: %v", what, err)
	}
}

// waitAnswered waits until p's REGISTERs are answered again.
func waitAnswered(t *testing.T, p *sipua.Phone, within time.Duration, what string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var st int
	if err := harness.Eventually(ctx, func() (err error) {
		st, err = answered(p)
		return err
	}); err != nil {
		t.Fatalf("%s: not answered: %v", what, err)
	}
	return st
}
