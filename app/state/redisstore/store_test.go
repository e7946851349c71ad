package redisstore_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func open(t testing.TB, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformance runs the shared suite on one redis-server; each subtest
// gets its own key prefix, so they do not see each other.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "t:" + t.Name() + ":"})
	})
}

func TestKeysCarryOneHashTag(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, redisstore.Config{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	if _, err := s.Incr(ctx, "x", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "pbx1", time.Minute); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Client().Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 2 {
		t.Fatalf("keys = %q", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "{doorman}:") {
			t.Errorf("key %q lacks the {doorman}: hash tag", k)
		}
	}
}
