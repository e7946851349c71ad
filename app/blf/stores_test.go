package blf

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
)

// forStores runs f on the in-memory store and on the real Redis store
// (redis-server via redistest, one redisstore.Store per node, as agents).
func forStores(t *testing.T, f func(t *testing.T, open func() Store)) {
	t.Run("store=mem", func(t *testing.T) {
		m := newMemStore()
		f(t, func() Store { return m })
	})
	t.Run("store=redis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("short: no redis-server")
		}
		f(t, redisOpener(t))
	})
}

// redisOpener starts a redis-server and returns a function opening a new
// client Store on it, closed when the test ends.
func redisOpener(t testing.TB) func() Store {
	_, open := redisServerOpener(t)
	return open
}

// redisServerOpener is redisOpener that also returns the server, to stop
// or restart it.
func redisServerOpener(t testing.TB) (*redistest.Server, func() Store) {
	srv := redistest.Start(t)
	prefix := "blf:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	return srv, func() Store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := redisstore.New(ctx, redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: prefix, WatchPing: 200 * time.Millisecond}, testLog(t))
		if err != nil {
			t.Fatalf("redisstore: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func clusterOn(t *testing.T, open func() Store, names ...string) (Store, map[string]*node) {
	nodes := map[string]*node{}
	var first Store
	for _, name := range names {
		s := open()
		if first == nil {
			first = s
		}
		nodes[name] = startNode(t, s, name, testConfig())
		// Start the next one only once this one's first heartbeat is
		// stored: a server whose states arrive before it counts as live
		// gets UNAVAILABLE written for a moment, which tests that count
		// writes would see.
		eventually(t, name+"'s first heartbeat", func() bool {
			live, err := s.Servers(context.Background())
			_, ok := live[name]
			return err == nil && ok
		})
	}
	return first, nodes
}

// stored returns server's state of device in the store ("" if none).
func stored(t testing.TB, s Store, server, device string) string {
	t.Helper()
	all, err := s.DeviceStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range all {
		if ds.Server == server && ds.Device == device {
			return ds.State
		}
	}
	return ""
}
