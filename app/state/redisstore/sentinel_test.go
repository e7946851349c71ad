package redisstore_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
)

// TestSentinelFailover: through Sentinel, the Store follows a failover to
// the replica; the watch resyncs and delivers changes made on the new master.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr, DisableIdentity: true, Protocol: 2})
	defer mc.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := mc.Info(ctx, "replication").Result()
		if strings.Contains(info, "connected_slaves:1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never connected:\n%s", replica.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sentinel := redistest.StartSentinel(t, master, "doorman-test")

	cfg := redisstore.Config{Addrs: []string{sentinel.Addr}, MasterName: "doorman-test", WatchPing: 200 * time.Millisecond}
	s := open(t, cfg)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.WatchBans(wctx)
	if err != nil {
		t.Fatal(err)
	}
	before := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true}
	putUntilOK(t, s, before)
	if e := nextBan(t, w, "before failover"); e.Kind != state.Added {
		t.Fatalf("got %+v", e)
	}
	// Replication is asynchronous: make sure the replica has the ban. WAIT
	// waits only for the calling connection's own writes, and the store
	// wrote on another one: write a fence here, after the ban in the one
	// replication stream, and wait for that.
	if err := mc.Set(ctx, "doorman-test:fence", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := mc.Do(ctx, "WAIT", 1, 15000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	master.Stop()
	if e := nextBan(t, w, "after failover"); e.Kind != state.Resync {
		t.Fatalf("got %+v; want Resync", e)
	}
	after := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Permanent: true}
	putUntilOK(t, s, after)
	// The replica had the first ban; the new master has both.
	bans, err := s.ListBans(ctx)
	if err != nil || len(bans) != 2 {
		t.Fatalf("ListBans on the new master = %+v, %v", bans, err)
	}
	for {
		e := nextBan(t, w, "change on the new master")
		if e.Kind == state.Resync {
			continue // the watch may have resynced more than once during the failover
		}
		if e.Kind != state.Added || e.Ban.Prefix != after.Prefix {
			t.Fatalf("got %+v; want Added %v", e, after.Prefix)
		}
		break
	}
}
