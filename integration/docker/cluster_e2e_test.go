package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCluster runs the whole story on one cluster, in order: every step
// needs the state the previous ones left (registrations, bans, a restarted
// server), and bringing the cluster up is the slow part.
func TestCluster(t *testing.T) {
	requireDocker(t)
	start := time.Now()
	c := up(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	within := func(d time.Duration) (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, d) }

	wctx, wcancel := within(60 * time.Second)
	for _, ip := range []string{ipA, ipB} {
		if err := c.healthy(wctx, ip); err != nil {
			t.Fatalf("agent at %s never became healthy: %v", ip, err)
		}
	}
	wcancel()
	t.Logf("cluster healthy after %s", time.Since(start).Round(time.Millisecond))

	step := func(name string, f func(t *testing.T)) {
		t0 := time.Now()
		if !t.Run(name, f) {
			t.FailNow() // later steps build on this one
		}
		t.Logf("%s: %s", name, time.Since(t0).Round(time.Millisecond))
	}

	step("phones register", func(t *testing.T) {
		for _, r := range []struct{ ip, user string }{{ipA, "1001"}, {ipB, "1002"}} {
			res, answered, err := c.register("phone", r.ip, r.user, "pw"+r.user)
			if err != nil || !answered || res.Status != 200 {
				t.Fatalf("phone REGISTER %s at %s: status %d answered %v err %v", r.user, r.ip, res.Status, answered, err)
			}
		}
	})

	step("dialLocal across servers", func(t *testing.T) {
		for _, d := range []struct{ server, ext, want string }{
			{"asterisk-a", "1002", "PJSIP/doorman-interserver/sip:1002@" + ipB + ":5060,25,TtWw"},
			{"asterisk-b", "1001", "PJSIP/doorman-interserver/sip:1001@" + ipA + ":5060,25,TtWw"},
			{"asterisk-a", "1001", "PJSIP/1001,25,TtWw"},
		} {
			wctx, wcancel := within(20 * time.Second)
			err := eventually(wctx, func() error {
				r, err := c.agi(d.server, "agi://127.0.0.1:4573/dialLocal,"+d.ext+",25,TtWw")
				if err != nil {
					return err
				}
				if got := r.Vars["dialString"]; got != d.want {
					return fmt.Errorf("dialString %q (dialStatus %s), want %q", got, r.Vars["dialStatus"], d.want)
				}
				return nil
			})
			wcancel()
			if err != nil {
				t.Errorf("dialLocal %s on %s: %v", d.ext, d.server, err)
			}
		}
	})

	step("BLF across servers", func(t *testing.T) {
		for _, l := range []struct{ from, to, ext string }{{ipB, ipA, "1002"}, {ipA, ipB, "1001"}} {
			for _, state := range []string{"INUSE", "NOT_INUSE"} {
				if err := c.control("POST", l.from, "/control/devicestate",
					map[string]string{"device": "PJSIP/" + l.ext, "state": state}, nil); err != nil {
					t.Fatalf("set PJSIP/%s %s on %s: %v", l.ext, state, l.from, err)
				}
				wctx, wcancel := within(15 * time.Second)
				err := eventually(wctx, func() error {
					var got struct{ State string }
					if err := c.control("GET", l.to, "/control/devicestate?device=Stasis:"+l.ext, nil, &got); err != nil {
						return err
					}
					if got.State != state {
						return fmt.Errorf("Stasis:%s is %s", l.ext, got.State)
					}
					return nil
				})
				wcancel()
				if err != nil {
					t.Errorf("PJSIP/%s %s on %s never showed on %s: %v", l.ext, state, l.from, l.to, err)
				}
			}
		}
	})

	step("brute force is banned on both servers", func(t *testing.T) {
		c.attack(t, "attacker-1", ipA)
		c.expectDropped(t, "attacker-1", ipA, ipB)
		c.expectAnswered(t, "phone", ipA, ipB)
		for _, ip := range []string{ipA, ipB} {
			c.expectBanListed(t, ip, "10.231.0.101/32")
		}
	})

	step("one server down, the other keeps working", func(t *testing.T) {
		if out, err := c.compose("stop", "-t", "2", "doorman-b", "asterisk-b"); err != nil {
			t.Fatalf("stop server b: %v\n%s", err, out)
		}
		c.attack(t, "attacker-2", ipA)
		c.expectDropped(t, "attacker-2", ipA)
		c.expectAnswered(t, "phone", ipA)
		r, err := c.agi("asterisk-a", "agi://127.0.0.1:4573/dialLocal,1001,25,TtWw")
		if err != nil || r.Vars["dialString"] != "PJSIP/1001,25,TtWw" {
			t.Errorf("dialLocal 1001 on a with b down: %+v %v", r, err)
		}

		// b comes back and enforces the ban made while it was away.
		if out, err := c.compose("start", "asterisk-b", "doorman-b"); err != nil {
			t.Fatalf("start server b: %v\n%s", err, out)
		}
		wctx, wcancel := within(60 * time.Second)
		defer wcancel()
		if err := c.healthy(wctx, ipB); err != nil {
			t.Fatalf("agent b not healthy after its restart: %v", err)
		}
		c.expectDropped(t, "attacker-2", ipB)
		c.expectDropped(t, "attacker-1", ipB)
		c.expectAnswered(t, "phone", ipB)
	})

	step("Redis down, both servers keep banning locally", func(t *testing.T) {
		if out, err := c.compose("stop", "-t", "2", "redis"); err != nil {
			t.Fatalf("stop redis: %v\n%s", err, out)
		}
		c.attack(t, "attacker-3", ipB)
		c.expectDropped(t, "attacker-3", ipB)
		c.expectDropped(t, "attacker-1", ipA, ipB) // earlier bans stay in the kernel
		c.expectAnswered(t, "phone", ipA, ipB)
		for _, s := range []string{"doorman-a", "doorman-b"} {
			if ok, err := c.running(s); err != nil || !ok {
				t.Errorf("%s is not running steadily without Redis (running %v, err %v)", s, ok, err)
			}
		}
		if out, err := c.compose("start", "redis"); err != nil {
			t.Fatalf("start redis: %v\n%s", err, out)
		}
		wctx, wcancel := within(60 * time.Second)
		defer wcancel()
		for _, ip := range []string{ipA, ipB} {
			if err := c.healthy(wctx, ip); err != nil {
				t.Errorf("agent at %s not healthy after Redis returned: %v", ip, err)
			}
		}
	})
	t.Logf("whole run: %s", time.Since(start).Round(time.Millisecond))
}

// attack sends one REGISTER with a wrong password: it must be answered (the
// source is not banned yet) with 401.
func (c *cluster) attack(t *testing.T, from, ip string) {
	t.Helper()
	res, answered, err := c.register(from, ip, "1001", "wrong-password")
	if err != nil || !answered || res.Status != 401 {
		t.Fatalf("%s's first bad REGISTER at %s: want an answered 401, got status %d answered %v err %v",
			from, ip, res.Status, answered, err)
	}
}

// expectDropped waits until REGISTERs from a probe get no answer from each
// server: the kernel drops them before the (simulated) Asterisk sees them.
func (c *cluster) expectDropped(t *testing.T, from string, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := eventually(ctx, func() error {
			res, answered, err := c.register(from, ip, "1001", "wrong-password")
			if err != nil {
				return err
			}
			if answered {
				return fmt.Errorf("answered with %d", res.Status)
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Errorf("REGISTERs from %s still reach %s: %v", from, ip, err)
		}
	}
}

// expectAnswered checks that another source still gets answers: a phone
// refreshing 1003 from a fixed contact, so each attempt can get 200.
func (c *cluster) expectAnswered(t *testing.T, from string, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := eventually(ctx, func() error {
			res, answered, err := c.register(from, ip, "1003", "pw1003", "-local", ipPhone+":5099")
			switch {
			case err != nil:
				return err
			case !answered:
				return errors.New("no answer")
			case res.Status != 200:
				return fmt.Errorf("status %d", res.Status)
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Errorf("%s gets no service from %s: %v", from, ip, err)
		}
	}
}

// expectBanListed checks the agent of server ip lists prefix among its bans.
func (c *cluster) expectBanListed(t *testing.T, ip, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := eventually(ctx, func() error {
		var bans []struct{ Prefix string }
		if err := c.api(ip, "/api/bans", &bans); err != nil {
			return err
		}
		var got []string
		for _, b := range bans {
			if b.Prefix == prefix {
				return nil
			}
			got = append(got, b.Prefix)
		}
		return fmt.Errorf("bans are [%s]", strings.Join(got, " "))
	})
	if err != nil {
		t.Errorf("agent at %s does not list %s: %v", ip, prefix, err)
	}
}
