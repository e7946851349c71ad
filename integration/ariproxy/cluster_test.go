package ariproxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/ariproxy"
	"github.com/asterisksupport/doorman/app/blf"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
)

const (
	native = "native"
	proxyT = "ari-proxy"
)

// cluster is n simulated Asterisk servers, each with its Busy Lamp
// Monitor reaching it over one transport, sharing one real Redis.
type cluster struct {
	servers []*server
	mons    []*blf.Monitor
	clients []ari.Client
}

func entity(i int) string { return fmt.Sprintf("02:00:00:00:00:%02x", 0x0a+i) }

// startCluster starts n servers; exts(i) names server i's PJSIP endpoints.
func startCluster(t testing.TB, transport string, n int, exts func(int) []string, cfg blf.Config) *cluster {
	t.Helper()
	rd := redistest.Start(t)
	natsURL := ""
	if transport == proxyT {
		natsURL = startNATS(t).URL
	}
	c := &cluster{}
	for i := range n {
		name := fmt.Sprintf("aim-%c", 'a'+i)
		s := startServerWith(t, natsURL, name, entity(i), exts(i))
		c.servers = append(c.servers, s)
		log := testLog(t).With("server", name)
		var cl ari.Client
		var err error
		switch transport {
		case native:
			cl, err = ari.NewNative(context.Background(), ari.NativeConfig{URL: s.url(), Username: ariUser, Password: ariPass,
				BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, log)
		case proxyT:
			cl, err = ariproxy.New(context.Background(), ariproxy.Config{NATSURL: natsURL, Node: s.entity,
				RetryInterval: 50 * time.Millisecond, CheckInterval: time.Second}, log)
		}
		if err != nil {
			t.Fatal(err)
		}
		store, err := redisstore.New(context.Background(), redisstore.Config{Addrs: []string{rd.Addr}}, log)
		if err != nil {
			t.Fatal(err)
		}
		mon, err := blf.New(cfg, blf.Deps{Store: store, ARI: cl, Server: name, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = mon.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			cl.Close()
			store.Close()
		})
		c.mons = append(c.mons, mon)
		c.clients = append(c.clients, cl)
	}
	eventually(t, "every monitor healthy", func() bool {
		for _, m := range c.mons {
			if m.Health() != nil {
				return false
			}
		}
		return true
	})
	return c
}

func testBLFConfig() blf.Config {
	c := blf.DefaultConfig()
	c.HeartbeatInterval = 100 * time.Millisecond
	c.HeartbeatTTL = time.Second
	c.RetryInterval = 100 * time.Millisecond
	c.StoreTimeout = time.Second
	return c
}

func waitStasis(t testing.TB, s *server, name, want string) {
	t.Helper()
	eventually(t, s.name+": "+name+" = "+want, func() bool { return s.stasis(name) == want })
}

// TestBLFCrossServer is the Busy Lamp Monitor's cross-server behaviour,
// unchanged, over both transports: a phone's state on one server shows as
// Stasis:<ext> on every other server (never on its own), and an Asterisk
// restart that replays stale astdb states is corrected.
func TestBLFCrossServer(t *testing.T) {
	for _, transport := range []string{native, proxyT} {
		t.Run(transport, func(t *testing.T) {
			c := startCluster(t, transport, 3, func(int) []string { return []string{"1001", "1002", "1003"} }, testBLFConfig())
			a, b, cc := c.servers[0], c.servers[1], c.servers[2]

			if err := a.sim.SetDeviceState("PJSIP/1001", "RINGING"); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, b, "Stasis:1001", "RINGING")
			waitStasis(t, cc, "Stasis:1001", "RINGING")
			if err := a.sim.SetDeviceState("PJSIP/1001", "INUSE"); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, b, "Stasis:1001", "INUSE")
			waitStasis(t, cc, "Stasis:1001", "INUSE")
			waitStasis(t, a, "Stasis:1001", "UNAVAILABLE") // its own phone never counts

			// The same extension ringing on b too: c sees the aggregate.
			if err := b.sim.SetDeviceState("PJSIP/1001", "RINGING"); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, cc, "Stasis:1001", "RINGINUSE")
			waitStasis(t, a, "Stasis:1001", "RINGING")

			// b's Asterisk restarts and replays stale astdb states.
			if err := b.sim.Backend().SetStasisState("Stasis:1001", "NOT_INUSE"); err != nil {
				t.Fatal(err)
			}
			if err := b.sim.Backend().SetStasisState("Stasis:4711", "BUSY"); err != nil {
				t.Fatal(err)
			}
			if err := b.sim.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, b, "Stasis:1001", "INUSE")
			waitStasis(t, b, "Stasis:4711", "UNAVAILABLE")

			// And it keeps propagating from and to the restarted server.
			if err := b.sim.SetDeviceState("PJSIP/1002", "BUSY"); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, a, "Stasis:1002", "BUSY")
			if err := cc.sim.SetDeviceState("PJSIP/1003", "RINGING"); err != nil {
				t.Fatal(err)
			}
			waitStasis(t, b, "Stasis:1003", "RINGING")
		})
	}
}
