package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
	"github.com/asterisksupport/doorman/integration/harness"
)

// interserver is the finder's default interserver_endpoint.
const interserver = "doorman-interserver"

// agi makes the Asterisk of s run AGI() (by default against its own agent).
func (s *server) agi(t *testing.T, req agiRequest) agiResult {
	t.Helper()
	if req.AppData == "" && req.Addr == "" {
		req.Addr = s.fastAGI
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.ast.agi(ctx, req)
	if err != nil {
		t.Fatalf("%s: AGI: %v", s.name, err)
	}
	return res
}

// restart restarts the Asterisk of s (skipping t where that is not allowed).
func (s *server) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	skipOn(t, s.name+": restart Asterisk", s.ast.restart(ctx))
}

// dialLocal runs agi://127.0.0.1:4573/dialLocal,<args> on s.
func (s *server) dialLocal(t *testing.T, args ...string) (string, string) {
	t.Helper()
	res := s.agi(t, agiRequest{Script: "dialLocal", Args: args})
	if res.Status != "SUCCESS" {
		t.Fatalf("%s: AGISTATUS %s, commands %q", s.name, res.Status, res.Commands)
	}
	return res.dial()
}

// waitDial waits until dialLocal on s answers want (dialString, dialStatus).
func (s *server) waitDial(t *testing.T, within time.Duration, wantDial, wantStatus string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var gotDial, gotStatus string
	err := harness.Eventually(ctx, func() error {
		gotDial, gotStatus = s.dialLocal(t, args...)
		if gotDial != wantDial || gotStatus != wantStatus {
			return fmt.Errorf("dialString %q dialStatus %q", gotDial, gotStatus)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s dialLocal %q: want dialString %q dialStatus %q; last %v", s.name, args, wantDial, wantStatus, err)
	}
}

// register registers p and fails the test unless it gets a 200. A lost
// datagram is retried, as a phone's retransmissions would (the bed shares
// two cores with other work: a 400 ms request timeout is sometimes missed).
func register(t *testing.T, p *sipua.Phone, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := harness.Eventually(ctx, func() error {
		p.NewDialog()
		resp, err := p.Register(ctx)
		if err != nil {
			return err
		}
		if resp.Status != 200 {
			return fmt.Errorf("status %d", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: REGISTER: %v; want 200", what, err)
	}
}

// unregister removes p's contact (Expires: 0 in its dialog), retrying a
// lost datagram.
func unregister(t *testing.T, p *sipua.Phone, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := harness.Eventually(ctx, func() error {
		resp, err := p.Unregister(ctx)
		if err != nil {
			return err
		}
		if resp.Status != 200 {
			return fmt.Errorf("status %d", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: unREGISTER: %v; want 200", what, err)
	}
}

type location struct {
	Server     string    `json:"server"`
	ServerAddr string    `json:"server_addr"`
	Endpoint   string    `json:"endpoint"`
	AOR        string    `json:"aor"`
	Contact    string    `json:"contact"`
	Expires    time.Time `json:"expires"`
}

func (s *server) whereis(t *testing.T, ext string) []location {
	t.Helper()
	var locs []location
	if err := s.api("GET", "/api/whereis/"+ext, nil, &locs); err != nil {
		t.Fatal(err)
	}
	return locs
}

// healthy fails the test unless s's agent still runs and reports the
// finder healthy.
func (s *server) healthy(t *testing.T, job string) {
	t.Helper()
	if s.agent != nil {
		if ok, err := s.agent.Exited(); ok {
			t.Fatalf("%s: agent exited: %v", s.name, err)
		}
	}
	s.waitHealthy(job)
}

// TestFinder drives real SIP registrations and FastAGI dialLocal sessions
// through a two-server cluster.
func TestFinder(t *testing.T) {
	c := newCluster(t, opts{})
	a, b := c.servers[0], c.servers[1]
	for _, s := range c.servers {
		s.waitHealthy("finder")
	}
	phones := c.client(t, "phones")
	onB := phone(t, phones, phones.addr.String(), b.sipTarget(t, false), "1001", c.password("1001"))
	onA := phone(t, phones, phones.addr.String(), a.sipTarget(t, false), "1001", c.password("1001"))
	bAddr, aAddr := b.sipAddr, a.sipAddr
	remote := "PJSIP/" + interserver + "/sip:1001@" + bAddr + ",25,TtWw"
	args := []string{"1001", "25", "TtWw", "1001"}

	t.Run("not registered anywhere", func(t *testing.T) {
		d, st := a.dialLocal(t, args...)
		if d != "" || st != "NOTFOUND" {
			t.Fatalf("got dialString %q dialStatus %q; want empty, NOTFOUND", d, st)
		}
	})

	t.Run("phone on B, asked on A", func(t *testing.T) {
		register(t, onB, "phone -> B")
		a.waitDial(t, 10*time.Second, remote, "REMOTE", args...)
		// The seed's form: agi://host:port,dialLocal,1001,... (no script).
		res := a.agi(t, agiRequest{Script: "", Args: append([]string{"dialLocal"}, args...)})
		if d, st := res.dial(); d != remote || st != "REMOTE" {
			t.Fatalf("seed form: got %q %q; want %q REMOTE (commands %q)", d, st, remote, res.Commands)
		}
		// The same through an extensions.conf-style argument string.
		res = a.agi(t, agiRequest{AppData: "agi://" + a.fastAGI + "/dialLocal,1001,25,TtWw,1001"})
		if d, _ := res.dial(); d != remote {
			t.Fatalf("app_data form: got %q; want %q", d, remote)
		}
	})

	t.Run("whereis lists the location with server and expiry", func(t *testing.T) {
		locs := a.whereis(t, "1001")
		if len(locs) != 1 || locs[0].Server != b.name || locs[0].ServerAddr != bAddr || locs[0].AOR != "1001" {
			t.Fatalf("whereis 1001 on A: %+v; want one location on %s (%s)", locs, b.name, bAddr)
		}
		if !strings.Contains(locs[0].Contact, "sip:1001@"+phones.addr.String()) {
			t.Errorf("contact %q is not the phone's", locs[0].Contact)
		}
		if left := time.Until(locs[0].Expires); left < time.Minute || left > 2*time.Hour {
			t.Errorf("expiry %v is %v away; want the registration's expiry plus grace", locs[0].Expires, left)
		}
		// The CLI, run on A like an operator would.
		c.requireSim(t, "running `doorman whereis` with the agent's config file (the API checks above passed)")
		out, err := a.host.Run(filepath.Join(c.bin, "doorman"), "whereis", "-c", a.cfgPath, "1001")
		if err != nil {
			t.Fatalf("doorman whereis: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "SERVER") || !strings.Contains(lines[0], "EXPIRES") ||
			!strings.Contains(lines[1], b.name) || !strings.Contains(lines[1], bAddr) ||
			!strings.Contains(lines[1], locs[0].Expires.Format("2006-01-02")) {
			t.Fatalf("doorman whereis 1001 printed:\n%s\nwant a header with SERVER and EXPIRES and one row for %s", out, b.name)
		}
		out, err = a.host.Run(filepath.Join(c.bin, "doorman"), "whereis", "-c", a.cfgPath, "1003")
		if err != nil || !strings.Contains(out, "1003") || !strings.Contains(out, "nowhere") {
			t.Fatalf("doorman whereis 1003 (unregistered): %v\n%s", err, out)
		}
	})

	t.Run("phone on A is local", func(t *testing.T) {
		unregister(t, onB, "phone -> B")
		register(t, onA, "phone -> A")
		a.waitDial(t, 10*time.Second, "PJSIP/1001,25,TtWw", "LOCAL", args...)
		b.waitDial(t, 10*time.Second, "PJSIP/"+interserver+"/sip:1001@"+aAddr+",25,TtWw", "REMOTE", args...)
	})

	t.Run("after unregister it is not found", func(t *testing.T) {
		unregister(t, onA, "phone -> A")
		a.waitDial(t, 10*time.Second, "", "NOTFOUND", args...)
		b.waitDial(t, 10*time.Second, "", "NOTFOUND", args...)
		if locs := a.whereis(t, "1001"); len(locs) != 0 {
			t.Fatalf("whereis after unregister: %+v", locs)
		}
	})

	t.Run("registered on both servers", func(t *testing.T) {
		other := c.client(t, "phones2")
		onB2 := phone(t, other, other.addr.String(), b.sipTarget(t, false), "1001", c.password("1001"))
		register(t, onA, "phone -> A")
		register(t, onB2, "second phone -> B")
		a.waitDial(t, 10*time.Second, "PJSIP/1001&"+remote, "FOUND", args...)
		b.waitDial(t, 10*time.Second, "PJSIP/1001&PJSIP/"+interserver+"/sip:1001@"+aAddr+",25,TtWw", "FOUND", args...)
		// Two extensions, each on its own server.
		p2 := phone(t, other, other.addr.String(), b.sipTarget(t, false), "1002", c.password("1002"))
		register(t, p2, "1002 -> B")
		a.waitDial(t, 10*time.Second, "PJSIP/"+interserver+"/sip:1002@"+bAddr+",25,TtWw", "REMOTE", "1002", "25", "TtWw", "1002")
		unregister(t, onB2, "second phone -> B")
		unregister(t, p2, "1002 -> B")
		a.waitDial(t, 10*time.Second, "PJSIP/1001,25,TtWw", "LOCAL", args...)
	})

	t.Run("B's Asterisk restart forgets its contacts", func(t *testing.T) {
		register(t, onB, "phone -> B")
		a.waitDial(t, 10*time.Second, "PJSIP/1001&"+remote, "FOUND", args...)
		b.restart(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if n, err := b.ast.contacts(ctx); err != nil || n != 0 {
			t.Fatalf("B's contacts after restart: %d %v; want none", n, err)
		}
		// The resync after the AMI relogin makes B's empty list the truth.
		a.waitDial(t, 15*time.Second, "PJSIP/1001,25,TtWw", "LOCAL", args...)
		register(t, onB, "phone -> B after the restart")
		a.waitDial(t, 10*time.Second, "PJSIP/1001&"+remote, "FOUND", args...)
		b.healthy(t, "finder")
	})

	t.Run("malformed arguments get a clear error", func(t *testing.T) {
		cases := []struct {
			name   string
			req    agiRequest
			status string
			reason string // part of the VERBOSE explanation
		}{
			{"ampersand in exten", agiRequest{Script: "dialLocal", Args: []string{"1001&1002", "25", "TtWw"}}, "INVALID", "extension"},
			{"comma in exten", agiRequest{AppData: "agi://" + a.fastAGI + `/dialLocal,10\,01,25,TtWw`}, "INVALID", "extension"},
			{"too many arguments", agiRequest{Script: "dialLocal", Args: []string{"1001", "25", "TtWw", "1001", "x"}}, "INVALID", "too many"},
			{"option with dialplan", agiRequest{Script: "dialLocal", Args: []string{"1001", "25", "U(evil)"}}, "INVALID", "option"},
			{"bad timeout", agiRequest{Script: "dialLocal", Args: []string{"1001", "-5", "t"}}, "INVALID", "timeout"},
			{"empty exten", agiRequest{Script: "dialLocal", Args: []string{""}}, "INVALID", "missing extension"},
			{"unknown script", agiRequest{Script: "other", Args: []string{"1001"}}, "ERROR", "unknown script"},
			{"no script", agiRequest{Script: "", Args: []string{"1001"}}, "ERROR", "dialLocal"},
		}
		for _, tc := range cases {
			res := a.agi(t, tc.req)
			d, st := res.dial()
			if d != "" || st != tc.status {
				t.Errorf("%s: got dialString %q dialStatus %q; want empty, %s (commands %q)", tc.name, d, st, tc.status, res.Commands)
				continue
			}
			if !strings.Contains(strings.Join(res.Commands, "\n"), tc.reason) {
				t.Errorf("%s: no VERBOSE explaining %q: %q", tc.name, tc.reason, res.Commands)
			}
		}
		a.healthy(t, "finder")
		// And the agent still answers good requests.
		if d, st := a.dialLocal(t, args...); st != "FOUND" || d != "PJSIP/1001&"+remote {
			t.Fatalf("after malformed requests: %q %q", d, st)
		}
	})

	t.Run("Redis down: the local answer still works", func(t *testing.T) {
		c.requireSim(t, "stopping Redis")
		unregister(t, onB, "phone -> B")
		a.waitDial(t, 10*time.Second, "PJSIP/1001,25,TtWw", "LOCAL", args...)
		c.redis.Stop()
		// Ask for longer than heartbeat_ttl (3 s), after which the index no
		// longer trusts its silent feed and asks the stopped store: from then
		// on only the local view can answer.
		start := time.Now()
		for time.Since(start) < 6*time.Second {
			d, st := a.dialLocal(t, args...)
			if d != "PJSIP/1001,25,TtWw" || st != "LOCAL" {
				t.Errorf("BUG (app/finder AGIServer.resolve): %v after Redis stopped, a phone registered on A, "+
					"asked on A, got dialString %q dialStatus %q; want PJSIP/1001,25,TtWw LOCAL from A's own contacts",
					time.Since(start).Round(time.Millisecond), d, st)
				break
			}
			time.Sleep(250 * time.Millisecond) // pace the sessions; the loop is bounded
		}
		// A phone that registers while Redis is down is local too.
		p2 := phone(t, phones, phones.addr.String(), a.sipTarget(t, false), "1002", c.password("1002"))
		register(t, p2, "1002 -> A with Redis down")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d, st string
		if err := harness.Eventually(ctx, func() error {
			if d, st = a.dialLocal(t, "1002", "25", "TtWw"); d != "PJSIP/1002,25,TtWw" || st != "LOCAL" {
				return fmt.Errorf("got %q %q", d, st)
			}
			return nil
		}); err != nil {
			t.Errorf("BUG (app/finder AGIServer.resolve): 1002 registered on A while Redis is down, asked on A: "+
				"dialString %q dialStatus %q; want PJSIP/1002,25,TtWw LOCAL", d, st)
		}
		a.healthy(t, "finder")

		// Redis comes back empty (no persistence): A pushes its contacts again.
		c.redis.Restart()
		b.waitDial(t, 15*time.Second, "PJSIP/"+interserver+"/sip:1001@"+aAddr+",25,TtWw", "REMOTE", args...)
		b.waitDial(t, 15*time.Second, "PJSIP/"+interserver+"/sip:1002@"+aAddr+",25,TtWw", "REMOTE", "1002", "25", "TtWw")
	})

	t.Run("A's agent dies: its phones are no location after heartbeat_ttl", func(t *testing.T) {
		a.killAgent(t)
		// heartbeat_ttl 3s (B's index hides A when A's last heartbeat runs
		// out), and slack.
		b.waitDial(t, 10*time.Second, "", "NOTFOUND", args...)
		// whereis reads the store, where A's heartbeat key expires by its
		// own TTL: within milliseconds of the index's estimate, not at
		// the same instant.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := harness.Eventually(ctx, func() error {
			if locs := b.whereis(t, "1001"); len(locs) != 0 {
				return fmt.Errorf("%+v", locs)
			}
			return nil
		}); err != nil {
			t.Fatalf("whereis on B after A died: %v", err)
		}
	})
}
