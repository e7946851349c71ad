package redisstore_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

// nextBan waits for the next ban event, skipping nothing.
func nextBan(t *testing.T, ch <-chan state.BanEvent, what string) state.BanEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatalf("%s: feed closed", what)
		}
		return e
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: no event", what)
	}
	return state.BanEvent{}
}

// putUntilOK retries a write until Redis is back.
func putUntilOK(t *testing.T, s *redisstore.Store, b state.Ban) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.PutBan(ctx, b)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PutBan never succeeded: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchResyncsAfterRestart kills redis-server under two agents and
// starts it again on the same port: each watch must say Resync, then go on
// delivering changes.
func TestWatchResyncsAfterRestart(t *testing.T) {
	for _, persist := range []bool{false, true} {
		name := map[bool]string{false: "volatile", true: "persistent"}[persist]
		t.Run(name, func(t *testing.T) {
			var opts []redistest.Option
			if persist {
				opts = append(opts, redistest.WithPersistence())
			}
			srv := redistest.Start(t, opts...)
			cfg := redisstore.Config{Addrs: []string{srv.Addr}, WatchPing: 200 * time.Millisecond}
			a, b := open(t, cfg), open(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wa, err := a.WatchBans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wd, err := b.WatchDeviceStates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true}
			putUntilOK(t, b, before)
			if e := nextBan(t, wa, "before restart"); e.Kind != state.Added || e.Ban.Prefix != before.Prefix {
				t.Fatalf("got %+v", e)
			}

			srv.Restart()

			if e := nextBan(t, wa, "after restart"); e.Kind != state.Resync {
				t.Fatalf("first event after restart = %+v; want Resync", e)
			}
			select {
			case e := <-wd:
				if e.Kind != state.Resync {
					t.Fatalf("device feed after restart: %+v; want Resync", e)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("device feed: no Resync after restart")
			}
			bans, err := a.ListBans(ctx)
			if err != nil {
				t.Fatalf("ListBans after restart: %v", err)
			}
			if persist != (len(bans) == 1) {
				t.Fatalf("ListBans after restart = %+v (persistence %v)", bans, persist)
			}
			after := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Permanent: true}
			putUntilOK(t, b, after)
			if e := nextBan(t, wa, "change after restart"); e.Kind != state.Added || e.Ban.Prefix != after.Prefix {
				t.Fatalf("got %+v; want Added %v", e, after.Prefix)
			}
		})
	}
}

// TestWatchSurvivesLongOutage keeps Redis down for several ping periods and
// while the watcher is idle.
func TestWatchSurvivesLongOutage(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisstore.Config{Addrs: []string{srv.Addr}, WatchPing: 100 * time.Millisecond}
	a := open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.WatchBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// Wait until the Store sees Redis as down, for several ping periods.
	deadline := time.Now().Add(5 * time.Second)
	for a.Ping(ctx) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // outage spanning several retries of the watch
	srv.Restart()
	if e := nextBan(t, w, "after outage"); e.Kind != state.Resync {
		t.Fatalf("got %+v; want Resync", e)
	}
	b := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.3/32"), Permanent: true}
	putUntilOK(t, a, b)
	if e := nextBan(t, w, "after outage"); e.Kind != state.Added || e.Ban.Prefix != b.Prefix {
		t.Fatalf("got %+v; want Added", e)
	}
}

// TestDownRedisFailsFast checks every kind of call gives an error within
// bounded time when Redis is gone, rather than hanging.
func TestDownRedisFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, redisstore.Config{Addrs: []string{srv.Addr}, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	srv.Stop()
	ctx := context.Background()
	calls := map[string]func() error{
		"Ping": func() error { return s.Ping(ctx) },
		"Incr": func() error { _, err := s.Incr(ctx, "k", time.Minute); return err },
		"PutBan": func() error {
			return s.PutBan(ctx, state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true})
		},
		"ListBans":     func() error { _, err := s.ListBans(ctx); return err },
		"WatchBans":    func() error { _, err := s.WatchBans(ctx); return err },
		"LookupAOR":    func() error { _, err := s.LookupAOR(ctx, "1001"); return err },
		"Heartbeat":    func() error { return s.Heartbeat(ctx, "a", time.Second) },
		"DeviceStates": func() error { _, err := s.DeviceStates(ctx); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if err == nil {
			t.Errorf("%s with Redis down: no error", name)
		}
		// Generous bound: this is about hanging, not speed.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
	// A Store made while Redis is down works once it is back.
	s2 := open(t, redisstore.Config{Addrs: []string{srv.Addr}})
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for s2.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("store never recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRegistrationFeedResync: the registration watch says Resync after
// redis-server restarts and after its subscription is killed.
func TestRegistrationFeedResync(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, redisstore.Config{Addrs: []string{srv.Addr}, WatchPing: 200 * time.Millisecond})
	t.Run("restart", func(t *testing.T) {
		statetest.RegistrationResync(t, s, func(*testing.T) { srv.Restart() })
	})
	t.Run("client kill", func(t *testing.T) {
		statetest.RegistrationResync(t, s, func(t *testing.T) {
			if err := s.Client().ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
				t.Fatalf("CLIENT KILL: %v", err)
			}
		})
	})
}
