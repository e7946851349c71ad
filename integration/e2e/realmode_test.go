package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/asterisksupport/doorman/integration/harness"
)

// realModeEnv turns TestRealModeAgainstSimulators on (task integration:targets).
const realModeEnv = "DOORMAN_E2E_REALMODE"

// TestRealModeAgainstSimulators proves the real-server path of the suite:
// for each test it starts the bed that test would start, exposes the
// simulators and agents like real servers (AMI, ARI and the agents' APIs on
// the bed's addresses; the simulators' control API stays on their loopback,
// out of reach), writes a targets file and runs the test again in a client
// namespace with DOORMAN_E2E_TARGETS set. Every subtest must pass except
// those listed as needing the suite's own bed.
// DOORMAN_E2E_REALMODE_OUTPUT=1 with -v also logs each run's whole output.
func TestRealModeAgainstSimulators(t *testing.T) {
	if loadTargets(t) != nil {
		t.Skip("already running against real targets")
	}
	if os.Getenv(realModeEnv) == "" {
		t.Skipf("set %s=1 (task integration:targets) to run the suite in real-server mode against simulators", realModeEnv)
	}
	harness.RequireRoot(t)
	for _, tc := range []struct {
		test    string
		o       opts
		skipped []string // subtests a real server cannot do
	}{
		{"TestBLF", opts{servers: 3}, []string{
			"Redis restart converges", "A dies: its phones turn UNAVAILABLE elsewhere", "A comes back: its lamps return"}},
		{"TestFinder", opts{}, []string{
			"whereis lists the location with server and expiry", "Redis down: the local answer still works",
			"A's agent dies: its phones are no location after heartbeat_ttl"}},
		{"TestIntrusion", intrusionOpts, []string{
			"targets/permanent ban survives restart and flush", "targets/Redis down: the local server still bans"}},
	} {
		t.Run(tc.test, func(t *testing.T) {
			o := tc.o
			o.exposed = true
			c := newCluster(t, o)
			file := writeTargets(t, c)
			clients := c.bed.AddHost("clients")
			for _, a := range []string{"198.18.0.101", "198.18.0.102", "198.18.0.103", "198.18.0.104",
				"198.18.0.105", trustedAddr, "fd19::4", "fd19::beef"} {
				clients.AddAddr(netip.MustParseAddr(a))
			}
			for _, s := range c.servers {
				s.host.MustRun("ip", "-6", "route", "add", "fd19::/64", "dev", "eth0")
			}
			out, err := runInNamespace(t, clients, tc.test, file)
			results := subtestResults(out)
			var bad []string
			for name, res := range results {
				sub, isSub := strings.CutPrefix(name, tc.test+"/")
				if !isSub {
					continue
				}
				want := "PASS"
				for _, s := range tc.skipped {
					if strings.ReplaceAll(s, " ", "_") == sub {
						want = "SKIP"
					}
				}
				if res != want {
					bad = append(bad, fmt.Sprintf("%s: %s, want %s", name, res, want))
				}
			}
			if err != nil || results[tc.test] != "PASS" || len(bad) > 0 || len(results) < 3 {
				t.Fatalf("%s against simulators as real targets: %v; %s; unexpected: %q\n%s", tc.test, err, results[tc.test], bad, out)
			}
			if testing.Verbose() && os.Getenv("DOORMAN_E2E_REALMODE_OUTPUT") != "" {
				t.Log(out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "real targets:") {
					t.Log(strings.TrimSpace(l))
				}
			}
		})
	}
}

// writeTargets describes c's servers as a targets file (the API token as a
// token_file, to go through that path too).
func writeTargets(t *testing.T, c *cluster) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := harness.Targets{
		Clients: map[string]string{"attacker": "198.18.0.101", "office": "198.18.0.102", "phones": "198.18.0.103",
			"phones2": "198.18.0.104", "amiattacker": "198.18.0.105", "trusted": trustedAddr,
			"attacker6": "fd19::4", "attacker6_sibling": "fd19::beef"},
		Accounts: map[string]harness.TargetAccount{},
	}
	for _, ext := range harness.TargetAccounts {
		tg.Accounts[ext] = harness.TargetAccount{Password: c.password(ext)}
	}
	for _, s := range c.servers {
		ip := s.host.IPv4.String()
		tg.Servers = append(tg.Servers, harness.TargetServer{
			Name: s.name,
			SIP:  harness.TargetSIP{UDP: net.JoinHostPort(ip, "5060"), UDP6: net.JoinHostPort(s.host.IPv6.String(), "5060")},
			AMI:  harness.TargetAMI{Addr: net.JoinHostPort(ip, "5038"), Username: "doorman", Secret: amiSecret},
			ARI:  harness.TargetARI{URL: "http://" + net.JoinHostPort(ip, "8088") + "/ari", Username: "doorman", Password: ariPass},
			Agent: harness.TargetAgent{API: "http://" + net.JoinHostPort(ip, "9485"), TokenFile: tokenFile,
				FastAGI: "127.0.0.1:4573"},
			AllowRestart: true,
		})
	}
	b, err := yaml.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "targets.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.LoadTargets(file); err != nil {
		t.Fatalf("the targets file written for the simulators does not parse: %v\n%s", err, b)
	}
	return file
}

// runInNamespace runs this test binary's test inside h with the targets file.
func runInNamespace(t *testing.T, h *harness.Host, test, targetsFile string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, os.Args[0],
		"-test.run", "^"+test+"$", "-test.v", "-test.count=1", "-test.timeout=8m")
	cmd.Env = append(os.Environ(), harness.TargetsEnv+"="+targetsFile)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// subtestResults reads "--- PASS: name (..." lines of go test -v output.
func subtestResults(out string) map[string]string {
	res := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		for _, r := range []string{"PASS", "FAIL", "SKIP"} {
			if rest, ok := strings.CutPrefix(l, "--- "+r+": "); ok {
				name, _, _ := strings.Cut(rest, " (")
				res[name] = r
			}
		}
	}
	return res
}
