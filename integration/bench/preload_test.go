package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
)

// preloadEnv makes the test binary, re-executed inside the Redis host's
// namespace, write permanent bans instead of running tests: the store's
// client dials on goroutines of its own, so the namespace must be the
// process's.
const preloadEnv = "DOORMAN_BENCH_PRELOAD"

func TestMain(m *testing.M) {
	if v := os.Getenv(preloadEnv); v != "" {
		if err := preload(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// preload parses "addr,first,count" and PutBans count permanent bans of
// consecutive IPv4 addresses from first.
func preload(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return fmt.Errorf("bench: %s: want addr,first,count", preloadEnv)
	}
	first, err := netip.ParseAddr(parts[1])
	if err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	ctx := context.Background()
	st, err := redisstore.New(ctx, redisstore.Config{Addrs: []string{parts[0]}, PoolSize: 64}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer st.Close()
	work := make(chan netip.Addr, 1024)
	errc := make(chan error, 64)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Go(func() {
			for a := range work {
				b := state.Ban{Prefix: netip.PrefixFrom(a, 32), Permanent: true, Reason: "bench preload",
					Server: "bench", Strikes: 1, Created: time.Now()}
				if err := st.PutBan(ctx, b); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	a := first
	for i := 0; i < n; i++ {
		work <- a
		a = a.Next()
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	// How long the agent's restore waits on the store alone.
	t0 := time.Now()
	list, err := st.ListBans(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("ListBans: %d bans in %s\n", len(list), time.Since(t0).Round(time.Millisecond))
	return nil
}

// preloadBans writes n permanent bans from first through the redisstore
// package, from inside the Redis host.
func (r *rig) preloadBans(first netip.Addr, n int) {
	r.tb.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.redis.Host.NS, os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", preloadEnv, r.redis.Addr, first, n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.tb.Fatalf("bench: preload %d bans: %v: %s", n, err, out)
	}
	r.logf("preload: %s", strings.TrimSpace(string(out)))
}
