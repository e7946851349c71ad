package ariproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/integration/asterisksim"
)

var (
	doormanOnce sync.Once
	doormanBin  string
	doormanErr  error
)

func doormanBinary(t testing.TB) string {
	t.Helper()
	proxyBinary(t) // makes binDir
	doormanOnce.Do(func() {
		doormanBin = filepath.Join(binDir, "doorman")
		out, err := exec.Command("go", "build", "-o", doormanBin, "github.com/asterisksupport/doorman/app/cmd/doorman").CombinedOutput()
		if err != nil {
			doormanErr = fmt.Errorf("go build doorman: %v\n%s", err, out)
		}
	})
	if doormanErr != nil {
		t.Fatal(doormanErr)
	}
	return doormanBin
}

// TestAgentOverProxy runs the real `doorman agent` binary with
// ari.transport: ari-proxy on two servers: one names its node, the other
// finds it by server.name; a ringing phone on one lights the other.
func TestAgentOverProxy(t *testing.T) {
	bin := doormanBinary(t)
	nats := startNATS(t)
	rd := redistest.Start(t)
	var agents []string
	var sims []*asterisksim.Sim
	for i, name := range []string{"aim-a", "aim-b"} {
		sim, err := asterisksim.New(asterisksim.Config{SystemName: name, EntityID: entity(i),
			HTTPAddr: "127.0.0.1:0", AMIAddr: "127.0.0.1:0", Endpoints: map[string]string{"1001": "pw", "1002": "pw"},
			ARIUsers: map[string]string{ariUser: ariPass}, AMIUsers: map[string]string{"doorman": "ami-secret"}}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		startProxy(t, nats.URL, sim)
		sims = append(sims, sim)

		node := ""
		if i == 0 {
			node = entity(0)
		}
		api := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cfg := fmt.Sprintf(`server: {name: %s, sip_addr: "127.0.0.1:5060", heartbeat_ttl: 3s}
jobs: {intrusion: false, finder: false, blf: true}
ami: {addr: %q, username: doorman, secret: ami-secret}
ari: {transport: ari-proxy, nats_url: %q, node: %q}
store: {redis: {addrs: [%q]}}
firewall: {backend: none}
api: {listen: %q, token: t0ken}
blf: {heartbeat_interval: 500ms, retry_interval: 200ms}
`, name, sim.AMIAddr(), nats.URL, node, rd.Addr, api)
		path := filepath.Join(t.TempDir(), "doorman.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		startProc(t, []string{"HOME=" + t.TempDir()}, bin, "agent", "-c", path)
		agents = append(agents, "http://"+api+"/healthz")
	}
	for _, u := range agents {
		eventually(t, u+" healthy", func() bool {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var h map[string]string
			return json.NewDecoder(resp.Body).Decode(&h) == nil && resp.StatusCode == 200 && h["blf"] == "ok"
		})
	}
	if err := sims[0].SetDeviceState("PJSIP/1001", "RINGING"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "aim-b Stasis:1001 RINGING", func() bool { return sims[1].Backend().StasisStates()["Stasis:1001"] == "RINGING" })
	if err := sims[1].SetDeviceState("PJSIP/1002", "INUSE"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "aim-a Stasis:1002 INUSE", func() bool { return sims[0].Backend().StasisStates()["Stasis:1002"] == "INUSE" })
}
