package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/harness"
)

// setDevice changes a device state on s's Asterisk, as a call would
// (skipping t where a real server cannot).
func (s *server) setDevice(t *testing.T, device, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	skipOn(t, fmt.Sprintf("%s: set %s to %s", s.name, device, state), s.ast.setDevice(ctx, device, state))
}

// device reads a device state from s's Asterisk.
func (s *server) device(device string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.ast.device(ctx, device)
}

// metric reads one unlabelled sample from the agent's /metrics.
func (s *server) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", s.apiURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.httpc(3 * time.Second).Do(req)
	if err != nil {
		t.Fatalf("%s: /metrics: %v", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: /metrics: %s: %s", s.name, resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: metric %s: %v", s.name, name, err)
			}
			return f
		}
	}
	t.Fatalf("%s: no metric %s", s.name, name)
	return 0
}

const stasisWrites = "doorman_blf_stasis_writes_total"

// lamp is what one server's Asterisk should show for a Stasis: device.
type lamp struct {
	s     *server
	state string
}

// lampsErr waits until every server shows its wanted Stasis state for dev
// and returns the last difference if that does not happen within.
func lampsErr(within time.Duration, dev string, want ...lamp) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return harness.Eventually(ctx, func() error {
		var bad []string
		for _, w := range want {
			st, err := w.s.device(dev)
			if err != nil {
				return err
			}
			if st != w.state {
				bad = append(bad, fmt.Sprintf("%s has %s, want %s", w.s.name, st, w.state))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		return nil
	})
}

// waitLamps is lampsErr that fails the test.
func waitLamps(t *testing.T, within time.Duration, dev, what string, want ...lamp) {
	t.Helper()
	if err := lampsErr(within, dev, want...); err != nil {
		t.Fatalf("%s: %s: %v", what, dev, err)
	}
}

// writes reads every server's Stasis write counter.
func writes(t *testing.T, c *cluster) []float64 {
	t.Helper()
	var out []float64
	for _, s := range c.servers {
		out = append(out, s.metric(t, stasisWrites))
	}
	return out
}

// waitWrites waits until each server's write counter grew by exactly
// delta[i] since before, then checks that it stays there for a while: the
// echo of a write (Asterisk raises DeviceStateChanged for every Stasis PUT)
// must never cause another write.
func waitWrites(t *testing.T, c *cluster, before []float64, what string, delta ...float64) {
	t.Helper()
	check := func() error {
		now := writes(t, c)
		for i, s := range c.servers {
			if got := now[i] - before[i]; got != delta[i] {
				return fmt.Errorf("%s wrote %v Stasis states, want %v", s.name, got, delta[i])
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := harness.Eventually(ctx, check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	// Stable for two heartbeats (heartbeat_interval is 1 s here).
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if err := check(); err != nil {
			t.Fatalf("%s: after convergence: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond) // sampling a counter that must not move
	}
}

// TestBLF drives device states through a three-server cluster and reads the
// Stasis: states on every Asterisk. The phones whose states change are
// registered where the change happens: a real server needs them for the
// calls that set PJSIP/<ext> (setDevice).
func TestBLF(t *testing.T) {
	c := newCluster(t, opts{servers: 3})
	a, b, cc := c.servers[0], c.servers[1], c.servers[2]
	for _, s := range c.servers {
		s.waitHealthy("blf", "finder")
	}
	phones := c.client(t, "phones")

	t.Run("initial lamps are UNAVAILABLE everywhere", func(t *testing.T) {
		for _, dev := range []string{"Stasis:1001", "Stasis:1002", "Stasis:1003"} {
			waitLamps(t, 10*time.Second, dev, "start", lamp{a, "UNAVAILABLE"}, lamp{b, "UNAVAILABLE"}, lamp{cc, "UNAVAILABLE"})
		}
		waitWrites(t, c, writes(t, c), "idle cluster", 0, 0, 0)
	})

	t.Run("a call on A lights B and C", func(t *testing.T) {
		a.registerPhone(t, phones, "1001")
		waitLamps(t, 5*time.Second, "Stasis:1001", "registered on A",
			lamp{a, "UNAVAILABLE"}, lamp{b, "NOT_INUSE"}, lamp{cc, "NOT_INUSE"})
		before := writes(t, c)
		a.setDevice(t, "PJSIP/1001", "RINGING")
		waitLamps(t, 5*time.Second, "Stasis:1001", "ringing on A",
			lamp{a, "UNAVAILABLE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"})
		waitWrites(t, c, before, "ringing on A", 0, 1, 1)

		before = writes(t, c)
		a.setDevice(t, "PJSIP/1001", "INUSE")
		waitLamps(t, 5*time.Second, "Stasis:1001", "in use on A",
			lamp{a, "UNAVAILABLE"}, lamp{b, "INUSE"}, lamp{cc, "INUSE"})
		waitWrites(t, c, before, "in use on A", 0, 1, 1)
	})

	t.Run("a phone on two servers: each shows the others' aggregate", func(t *testing.T) {
		a.registerPhone(t, phones, "1002")
		b.registerPhone(t, phones, "1002")
		// Registered on A and B: every server sees another one's NOT_INUSE.
		waitLamps(t, 5*time.Second, "Stasis:1002", "registered on A and B",
			lamp{a, "NOT_INUSE"}, lamp{b, "NOT_INUSE"}, lamp{cc, "NOT_INUSE"})

		before := writes(t, c)
		a.setDevice(t, "PJSIP/1002", "RINGING")
		waitLamps(t, 5*time.Second, "Stasis:1002", "ringing on A",
			lamp{a, "NOT_INUSE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"})
		waitWrites(t, c, before, "ringing on A", 0, 1, 1)

		before = writes(t, c)
		b.setDevice(t, "PJSIP/1002", "INUSE")
		// A: B INUSE + C UNAVAILABLE; B: A RINGING + C; C: RINGING + INUSE.
		waitLamps(t, 5*time.Second, "Stasis:1002", "ringing on A, in use on B",
			lamp{a, "INUSE"}, lamp{b, "RINGING"}, lamp{cc, "RINGINUSE"})
		waitWrites(t, c, before, "in use on B", 1, 0, 1)
	})

	t.Run("B's Asterisk restart: stale persisted Stasis states are corrected", func(t *testing.T) {
		// Make astdb stale: values doorman never wrote, persisted by the
		// simulated Asterisk like astdb would.
		b.setDevice(t, "Stasis:1001", "BUSY")
		b.setDevice(t, "Stasis:9999", "INUSE")
		b.restart(t)
		if st, _ := b.device("Stasis:9999"); st != "INUSE" {
			t.Logf("note: Stasis:9999 after restart is %s already (not replayed, or corrected)", st)
		}
		// A's calls go on: 1001 in use, 1002 ringing.
		waitLamps(t, 10*time.Second, "Stasis:1001", "after B's restart", lamp{b, "INUSE"})
		waitLamps(t, 10*time.Second, "Stasis:9999", "after B's restart (a name nobody has)", lamp{b, "UNAVAILABLE"})
		// The restart forgot B's contact and states: 1002 is now only on A.
		waitLamps(t, 10*time.Second, "Stasis:1002", "after B's restart",
			lamp{a, "UNAVAILABLE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"})
		b.waitHealthy("blf")
	})

	t.Run("Redis restart converges", func(t *testing.T) {
		// Redis comes back empty (no persistence, like a failover to an
		// empty replica): what the agents stored before is gone.
		c.requireSim(t, "stopping Redis")
		redisOutage(t, c, nil)
		if err := storeHas(t, b, 10*time.Second, "1001", a.name, "INUSE"); err != nil {
			t.Errorf("BUG (app/blf Monitor.publish): A's PJSIP/1001 INUSE, stored before Redis restarted empty, "+
				"is never published again (B's /api/lamps: %v)", err)
		}
		if err := lampsErr(10*time.Second, "Stasis:1001",
			lamp{a, "UNAVAILABLE"}, lamp{b, "INUSE"}, lamp{cc, "INUSE"}); err != nil {
			t.Errorf("after Redis restarted empty (see the BUG above): Stasis:1001: %v", err)
		}
		if err := lampsErr(10*time.Second, "Stasis:1002",
			lamp{a, "UNAVAILABLE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"}); err != nil {
			t.Errorf("after Redis restarted empty (see the BUG above): Stasis:1002: %v", err)
		}

		// A change made while Redis is down reaches the others once it is back.
		redisOutage(t, c, func() { a.setDevice(t, "PJSIP/1003", "RINGING") })
		if err := storeHas(t, b, 10*time.Second, "1003", a.name, "RINGING"); err != nil {
			t.Errorf("BUG (app/blf Monitor.publish): A's PJSIP/1003 RINGING, changed while Redis was down, "+
				"is not in the store after Redis returned (B's /api/lamps: %v)", err)
		}
		if err := lampsErr(10*time.Second, "Stasis:1003",
			lamp{a, "UNAVAILABLE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"}); err != nil {
			// Seen: A's snapshot reaches the new Redis before the others
			// resubscribe (the feed events are lost); their Resync reload
			// skips A, whose heartbeat the restart wiped; when A beats
			// again only the cached view is recomputed.
			t.Errorf("BUG (app/blf fanout: pollLive/recomputeAll after reload): A's PJSIP/1003 RINGING is in the store "+
				"but a server that reloaded while A was not yet live never counts it: Stasis:1003: %v", err)
		}
		for _, s := range c.servers {
			s.waitHealthy("blf", "store")
		}
	})

	t.Run("A dies: its phones turn UNAVAILABLE elsewhere", func(t *testing.T) {
		// Fresh changes, so this does not depend on the Redis subtest.
		c.requireSim(t, "killing the doorman agent")
		a.setDevice(t, "PJSIP/1001", "RINGING")
		a.setDevice(t, "PJSIP/1003", "INUSE")
		cc.setDevice(t, "PJSIP/1003", "RINGING") // C's own call: must stay on B
		waitLamps(t, 5*time.Second, "Stasis:1001", "before A dies", lamp{b, "RINGING"}, lamp{cc, "RINGING"})
		waitLamps(t, 5*time.Second, "Stasis:1003", "before A dies", lamp{b, "RINGINUSE"}, lamp{cc, "INUSE"})
		a.killAgent(t)
		// heartbeat_ttl 3s (+ heartbeat_interval 1s) and some slack.
		waitLamps(t, 10*time.Second, "Stasis:1001", "A's agent dead",
			lamp{b, "UNAVAILABLE"}, lamp{cc, "UNAVAILABLE"})
		waitLamps(t, 10*time.Second, "Stasis:1003", "A's agent dead",
			lamp{b, "RINGING"}, lamp{cc, "UNAVAILABLE"})
	})

	t.Run("A comes back: its lamps return", func(t *testing.T) {
		c.requireSim(t, "restarting the doorman agent")
		a.startAgent()
		a.waitHealthy("blf")
		waitLamps(t, 10*time.Second, "Stasis:1001", "A's agent back",
			lamp{a, "UNAVAILABLE"}, lamp{b, "RINGING"}, lamp{cc, "RINGING"})
		waitLamps(t, 10*time.Second, "Stasis:1003", "A's agent back",
			lamp{a, "RINGING"}, lamp{b, "RINGINUSE"}, lamp{cc, "INUSE"})
	})
}

// healthz returns the agent's /healthz report.
func (s *server) healthz() (map[string]string, error) {
	resp, err := s.httpc(2 * time.Second).Get(s.apiURL + "/healthz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	h := map[string]string{}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// redisOutage stops Redis, waits until every agent's store check fails,
// runs during (if any), and starts Redis again, empty.
func redisOutage(t *testing.T, c *cluster, during func()) {
	t.Helper()
	c.redis.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.Eventually(ctx, func() error {
		for _, s := range c.servers {
			if ok, _ := s.agent.Exited(); ok { // simulators only: see requireSim
				continue
			}
			h, err := s.healthz()
			if err != nil {
				return err
			}
			if h["store"] == "ok" {
				return fmt.Errorf("%s still reports the store ok", s.name)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("Redis stopped: %v", err)
	}
	if during != nil {
		during()
	}
	c.redis.Restart()
}

// storeHas waits until s's /api/lamps (read from the store) shows ext with
// state on server.
func storeHas(t *testing.T, s *server, within time.Duration, ext, server, state string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return harness.Eventually(ctx, func() error {
		var lamps []struct {
			Extension string            `json:"extension"`
			Servers   map[string]string `json:"servers"`
		}
		if err := s.api("GET", "/api/lamps", nil, &lamps); err != nil {
			return err
		}
		for _, l := range lamps {
			if l.Extension == ext {
				if l.Servers[server] == state {
					return nil
				}
				return fmt.Errorf("extension %s: %v, want %s on %s", ext, l.Servers, state, server)
			}
		}
		return fmt.Errorf("no extension %s in %d lamps", ext, len(lamps))
	})
}
