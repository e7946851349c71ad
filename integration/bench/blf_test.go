package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim"
	"github.com/asterisksupport/doorman/integration/harness"
	"github.com/asterisksupport/doorman/integration/measure"
)

// The Busy Lamp Monitor's propagation with every server in processes of
// its own, as in production: app/blf's BenchmarkPropagation runs the three
// monitors and simulated Asterisks in one Go process, where they share
// one scheduler; here each server is a network namespace with an
// asterisk-sim process and a doorman agent process (BLF job only), and
// Redis runs in a fourth.

const (
	lampServers = 3
	lampPhones  = 10000
	ariPassword = "bench-ari-secret"
)

var lampConfig = template.Must(template.New("cfg").Parse(`
server:
  name: {{.Name}}
  sip_addr: "{{.IP}}:5060"
  cluster: ["{{.IP}}"]
jobs: {intrusion: false, finder: false, blf: true}
ami: {addr: "127.0.0.1:5038", username: doorman, secret: "{{.AMISecret}}"}
ari: {url: "http://127.0.0.1:8088/ari", username: doorman, password: "{{.ARIPass}}", application: doorman}
store:
  embedded_path: "{{.Dir}}/state.db"
  redis: {addrs: ["{{.Redis}}"]}
api: {listen: "127.0.0.1:9485", token: "{{.Token}}"}
log_level: info
`))

// lampServer is one server of the bed: a simulated Asterisk and its agent.
type lampServer struct {
	name  string
	host  *harness.Host
	ctl   *http.Client // starts its connections inside host
	agent *harness.Proc
	// stasis is the latest Stasis: state the simulator stored per name,
	// from the traces read so far.
	stasis map[string]string
}

// lampDevice is server s's phone i and the Stasis: name it maps to.
func lampDevice(s, i int) (device, stasis string) {
	ext := fmt.Sprintf("%d%05d", s+1, i)
	return "SIP/" + ext, "Stasis:" + ext
}

func (s *lampServer) setDevice(device, state string) error {
	body, _ := json.Marshal(map[string]string{"device": device, "state": state})
	resp, err := s.ctl.Post("http://127.0.0.1:8089/control/devicestate", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: set %s: %w", s.name, device, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s: set %s: %s", s.name, device, resp.Status)
	}
	return nil
}

// trace returns the device states the simulator stored since the last
// call, and keeps the latest Stasis: ones in s.stasis.
func (s *lampServer) trace() ([]asterisksim.DeviceChange, error) {
	resp, err := s.ctl.Post("http://127.0.0.1:8089/control/devicetrace", "application/json", nil)
	if err != nil {
		return nil, fmt.Errorf("%s: device trace: %w", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: device trace: %s", s.name, resp.Status)
	}
	var t []asterisksim.DeviceChange
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: device trace: %w", s.name, err)
	}
	for _, c := range t {
		if strings.HasPrefix(c.Device, "Stasis:") {
			s.stasis[c.Device] = c.State
		}
	}
	return t, nil
}

// settled reports whether s's Asterisk shows every phone of the other
// servers as want and its own as UNAVAILABLE (nobody else has them).
func (s *lampServer) settled(self int, want string) bool {
	for o := range lampServers {
		exp := want
		if o == self {
			exp = "UNAVAILABLE"
		}
		for i := range lampPhones {
			if _, name := lampDevice(o, i); s.stasis[name] != exp {
				return false
			}
		}
	}
	return true
}

// startLampBed starts Redis and lampServers servers with lampPhones phones
// each (NOT_INUSE, set before the agents start, so their AMI snapshot has
// them), and waits until every server shows every phone.
func startLampBed(b *testing.B) ([]*lampServer, int) {
	harness.RequireRoot(b)
	bed := harness.New(b)
	bin := harness.Binaries(b)
	redis := bed.AddHost("redis").StartRedis(b)
	var servers []*lampServer
	for i := range lampServers {
		name := fmt.Sprintf("srv%d", i+1)
		h := bed.AddHost(name)
		h.Start(b, name+"-sim", filepath.Join(bin, "asterisk-sim"), "-system-name", name,
			"-ami", "127.0.0.1:5038", "-sip", "", "-http", "127.0.0.1:8088", "-control", "127.0.0.1:8089",
			"-ami-user", "doorman:"+amiSecret, "-ari-user", "doorman:"+ariPassword, "-trace-devices")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := h.WaitTCP(ctx, "127.0.0.1:8089")
		cancel()
		if err != nil {
			b.Fatalf("bench: %s: simulator not up: %v", name, err)
		}
		servers = append(servers, &lampServer{name: name, host: h, ctl: h.HTTPClient(10 * time.Second), stasis: map[string]string{}})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for si, s := range servers {
		wg.Go(func() {
			for i := range lampPhones {
				dev, _ := lampDevice(si, i)
				if err := s.setDevice(dev, "NOT_INUSE"); err != nil {
					errs[si] = err
					return
				}
			}
			_, errs[si] = s.trace() // forget the seeding
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range servers {
		dir := b.TempDir()
		var cfg bytes.Buffer
		if err := lampConfig.Execute(&cfg, map[string]any{"Name": s.name, "IP": s.host.IPv4, "AMISecret": amiSecret,
			"ARIPass": ariPassword, "Dir": dir, "Redis": redis.Addr, "Token": apiToken}); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "doorman.yaml")
		if err := os.WriteFile(path, cfg.Bytes(), 0o600); err != nil {
			b.Fatal(err)
		}
		s.agent = s.host.Start(b, s.name+"-doorman", filepath.Join(bin, "doorman"), "agent", "-c", path)
	}
	// Settled: every server shows every phone, and stores nothing more
	// for a while (a cold start writes UNAVAILABLE first, then corrects).
	deadline := time.Now().Add(3 * time.Minute)
	for quiet := 0; quiet < 3; {
		if time.Now().After(deadline) {
			b.Fatal("bench: the servers' lamps did not settle within 3 minutes")
		}
		time.Sleep(300 * time.Millisecond)
		quiet++
		for si, s := range servers {
			if ok, _ := s.agent.Exited(); ok {
				b.Fatalf("bench: %s: agent exited:\n%s", s.name, s.agent.Output())
			}
			t, err := s.trace()
			if err != nil {
				b.Fatal(err)
			}
			if len(t) > 0 || !s.settled(si, "NOT_INUSE") {
				quiet = 0
			}
		}
	}
	pid, err := pidOf(redis.Host, "redis-server")
	if err != nil {
		b.Fatal(err)
	}
	return servers, pid
}

// BenchmarkBLFProcesses: 3 servers x 10,000 phones, each server a
// simulated Asterisk and a doorman agent in processes of their own. A
// change's clock starts when the origin's simulator stores the device
// state (raised through its control API) and stops when both other
// simulators have stored the Stasis: state; both times are taken inside
// the simulators (POST /control/devicetrace). CPU is the three agents' and
// Redis's, per change.
func BenchmarkBLFProcesses(b *testing.B) {
	servers, redisPid := startLampBed(b)
	var agents []int
	for _, s := range servers {
		pid, err := pidOf(s.host, "doorman")
		if err != nil {
			b.Fatal(err)
		}
		agents = append(agents, pid)
	}
	cpu := func(pids ...int) (sum float64) {
		for _, pid := range pids {
			c, err := cpuSeconds(pid)
			if err != nil {
				b.Fatal(err)
			}
			sum += c
		}
		return sum
	}
	seq := 0
	for _, rate := range []float64{50} {
		b.Run(fmt.Sprintf("rate=%v", rate), func(b *testing.B) {
			if b.N > lampServers*lampPhones*3 {
				// A change is matched by its phone and state: each may
				// occur once per run.
				b.Fatalf("bench: at most %d changes per run", lampServers*lampPhones*3)
			}
			cpu0, redis0 := cpu(agents...), cpu(redisPid)
			start := time.Now()
			raisedBy := lampChanges(b, servers, &seq, b.N, rate)
			e2e, each := lampLatencies(b, servers, raisedBy)
			took := time.Since(start) // until the last write arrived, as app/blf counts
			cpu1, redis1 := cpu(agents...), cpu(redisPid)
			b.ReportMetric(float64(b.N)/took.Seconds(), "changes/s")
			b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "agents_cpu_µs/change")
			b.ReportMetric((redis1-redis0)*1e6/float64(b.N), "redis_cpu_µs/change")
			b.ReportMetric(float64(measure.Percentile(e2e, 50).Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(measure.Percentile(e2e, 99).Microseconds())/1000, "p99_ms")
			b.ReportMetric(float64(measure.Percentile(each, 50).Microseconds())/1000, "p50_each_ms")
			b.ReportMetric(float64(measure.Percentile(each, 99).Microseconds())/1000, "p99_each_ms")
		})
	}
}

// lampChange is one change the bench raised: its origin server, device,
// state and Stasis: name.
type lampChange struct {
	origin              int
	device, state, name string
}

// lampChanges raises n changes at rate per second, round robin over the
// servers, each on a phone not changed before in this run of the cycle.
func lampChanges(b *testing.B, servers []*lampServer, seq *int, n int, rate float64) []lampChange {
	b.Helper()
	cycle := []string{"RINGING", "INUSE", "NOT_INUSE"}
	out := make([]lampChange, 0, n)
	start := time.Now()
	for j := range n {
		i := *seq
		*seq++
		if d := time.Until(start.Add(time.Duration(float64(j) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		s := i % lampServers
		dev, name := lampDevice(s, (i/lampServers)%lampPhones)
		st := cycle[(i/(lampServers*lampPhones))%len(cycle)]
		if err := servers[s].setDevice(dev, st); err != nil {
			b.Fatal(err)
		}
		out = append(out, lampChange{origin: s, device: dev, state: st, name: name})
	}
	return out
}

// lampLatencies reads the simulators' traces until every change is stored
// on both other servers and returns, per change, the time from its raise
// to the later of the two (e2e) and to each of them (each).
func lampLatencies(b *testing.B, servers []*lampServer, changes []lampChange) (e2e, each []time.Duration) {
	b.Helper()
	type key struct{ device, state string }
	raised := map[key]int64{}
	applied := make([]map[key]int64, len(servers)) // Stasis: name, state -> first store
	for i := range applied {
		applied[i] = map[key]int64{}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for si, s := range servers {
			t, err := s.trace()
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range t {
				k := key{c.Device, c.State}
				m := applied[si]
				if !strings.HasPrefix(c.Device, "Stasis:") {
					m = raised
				}
				if _, seen := m[k]; !seen {
					m[k] = c.At
				}
			}
		}
		missing := 0
		for _, c := range changes {
			for o := range servers {
				if o != c.origin {
					if _, ok := applied[o][key{c.name, c.state}]; !ok {
						missing++
					}
				}
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: %d of %d Stasis: writes never arrived", missing, len(changes)*(len(servers)-1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range changes {
		t0, ok := raised[key{c.device, c.state}]
		if !ok {
			b.Fatalf("bench: %s: no trace of raising %s %s", servers[c.origin].name, c.device, c.state)
		}
		var last int64
		for o := range servers {
			if o == c.origin {
				continue
			}
			at := applied[o][key{c.name, c.state}]
			each = append(each, time.Duration(at-t0))
			last = max(last, at)
		}
		e2e = append(e2e, time.Duration(last-t0))
	}
	return e2e, each
}
