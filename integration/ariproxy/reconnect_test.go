package ariproxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari/ariproxy"
)

// TestNATSOutage: NATS goes away and comes back; the client reports it,
// signals Connected again (events of the gap are lost) and events flow.
func TestNATSOutage(t *testing.T) {
	nats := startNATS(t)
	a := startServer(t, nats.URL, "aim-a", "02:00:00:00:00:0a", 2)
	c := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity})
	waitSignal(t, c, "first connect")

	nats.stop()
	eventually(t, "NATS outage in status", func() bool {
		st := c.Status()
		return !st.Connected && strings.Contains(st.Err, "NATS")
	})
	drainSignals(c)
	nats.start(t)
	waitTCP(t, nats.addr)
	waitSignal(t, c, "after NATS came back")
	if st := c.Status(); !st.Connected || st.Reconnects < 1 {
		t.Fatalf("status after outage: %+v", st)
	}
	// The proxy reconnects on its own (it gives up after 60 tries of 2 s).
	eventually(t, "events flow again", func() bool {
		_ = a.sim.SetDeviceState("PJSIP/1001", "RINGING")
		defer a.sim.SetDeviceState("PJSIP/1001", "NOT_INUSE")
		select {
		case ev := <-c.Events():
			return ev.Node == a.entity
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

// TestStalledProxyTimesOut: a proxy that takes requests but never answers
// (replies dropped) costs 1+Retries attempts of RequestTimeout, then a
// typed error; once it answers again, requests work and the client is up.
func TestStalledProxyTimesOut(t *testing.T) {
	nats := startNATS(t)
	a := startServer(t, nats.URL, "aim-a", "02:00:00:00:00:0a", 2)
	c := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity, RequestTimeout: 200 * time.Millisecond, Retries: 2})
	waitSignal(t, c, "first connect")

	a.proxy.signal(syscall.SIGSTOP)
	start := time.Now()
	err := c.SetStasisState(context.Background(), "Stasis:1001", "BUSY")
	took := time.Since(start)
	a.proxy.signal(syscall.SIGCONT)
	if !errors.Is(err, ariproxy.ErrTimeout) || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("stalled proxy: err = %v", err)
	}
	if took < 600*time.Millisecond {
		t.Fatalf("gave up after %v, before 3 attempts of 200ms", took)
	}
	// The writes of the stalled attempts arrive late; a new write wins.
	if err := c.SetStasisState(context.Background(), "Stasis:1001", "INUSE"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "write after stall", func() bool { return a.stasis("Stasis:1001") == "INUSE" })

	// A context shorter than the retries ends the request.
	a.proxy.signal(syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = c.SetStasisState(ctx, "Stasis:1001", "BUSY")
	cancel()
	a.proxy.signal(syscall.SIGCONT)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: err = %v", err)
	}
}

// TestProxyRestart: with no proxy for the node, requests fail at once
// (NATS no responders) and the status says why; a new proxy is found
// without waiting for its minute announcement.
func TestProxyRestart(t *testing.T) {
	nats := startNATS(t)
	a := startServer(t, nats.URL, "aim-a", "02:00:00:00:00:0a", 2)
	c := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity})
	waitSignal(t, c, "first connect")
	nextEvent(t, c, "PJSIP/1001", "UNAVAILABLE") // the first re-read knows the phone

	a.proxy.stop()
	start := time.Now()
	err := c.SetStasisState(context.Background(), "Stasis:1001", "BUSY")
	if !errors.Is(err, ariproxy.ErrNoProxy) || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("no proxy: err = %v after %v", err, time.Since(start))
	}
	eventually(t, "down in status", func() bool { return !c.Status().Connected })
	drainSignals(c)
	// A change nobody relays: the repair after the reconnect finds it.
	if err := a.sim.SetDeviceState("PJSIP/1001", "BUSY"); err != nil {
		t.Fatal(err)
	}

	a.proxy.start(t)
	waitSignal(t, c, "proxy back")
	if ev := nextEvent(t, c, "PJSIP/1001", "BUSY"); ev.Node != a.entity {
		t.Fatalf("repaired event: %+v", ev)
	}
	if c.Repaired() < 1 {
		t.Fatalf("Repaired() = %d", c.Repaired())
	}
	if err := a.sim.SetDeviceState("PJSIP/1002", "RINGING"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, c, "PJSIP/1002", "RINGING"); ev.State != "RINGING" || ev.Node != a.entity {
		t.Fatalf("event after proxy restart: %+v", ev)
	}
}

// TestAsteriskRestart: Asterisk restarts behind its proxy (new
// startup_time, application subscriptions gone, astdb replayed): the
// client signals Connected and re-makes the deviceState: subscription.
func TestAsteriskRestart(t *testing.T) {
	nats := startNATS(t)
	a := startServer(t, nats.URL, "aim-a", "02:00:00:00:00:0a", 2)
	c := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity, CheckInterval: 200 * time.Millisecond})
	waitSignal(t, c, "first connect")
	drainSignals(c)

	if err := a.sim.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, c, "Asterisk restarted")
	eventually(t, "events flow after restart", func() bool {
		_ = a.sim.SetDeviceState("PJSIP/1001", "RINGING")
		defer a.sim.SetDeviceState("PJSIP/1001", "NOT_INUSE")
		select {
		case ev := <-c.Events():
			return ev.Node == a.entity
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
	if a.proxy.exited() {
		t.Fatal("ari-proxy exited on the Asterisk restart")
	}
}

// TestBurstRepaired: ari-proxy drops events past a burst of 100 (its
// ari/v5 bus buffer); after the burst the client re-reads the devices, so
// the consumer ends up with every device's last state all the same.
func TestBurstRepaired(t *testing.T) {
	nats := startNATS(t)
	var exts []string
	for i := range 300 {
		exts = append(exts, fmt.Sprintf("2%04d", i))
	}
	a := startServerWith(t, nats.URL, "aim-a", "02:00:00:00:00:0a", exts)
	c := newClient(t, ariproxy.Config{NATSURL: nats.URL, Node: a.entity, RepairInterval: -1})
	waitSignal(t, c, "first connect")
	last := map[string]string{}
	drain := func() {
		for len(c.Events()) > 0 {
			ev := <-c.Events()
			last[ev.Device] = ev.State
		}
	}
	// The connect-time repair reports every endpoint once.
	eventually(t, "initial states", func() bool { drain(); return len(last) == len(exts) })

	for _, e := range exts {
		if err := a.sim.SetDeviceState("PJSIP/"+e, "RINGING"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every device RINGING", func() bool {
		drain()
		for _, e := range exts {
			if last["PJSIP/"+e] != "RINGING" {
				return false
			}
		}
		return true
	})
	t.Logf("%d of %d changes found by repair", c.Repaired(), len(exts))
}
