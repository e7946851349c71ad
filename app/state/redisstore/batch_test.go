package redisstore_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

var _ statetest.BatchBans = (*redisstore.Store)(nil)

func TestBatchBans(t *testing.T) {
	srv := redistest.Start(t)
	statetest.RunBatch(t, func(t *testing.T) (statetest.BatchBans, statetest.BatchBans) {
		cfg := redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "t:" + t.Name() + ":"}
		return open(t, cfg), open(t, cfg)
	})
}

// WriteRound stores and publishes the bans and increments the counters in
// one pipeline; the first round on a Redis that has not cached the scripts
// (NOSCRIPT) and the next (cached) give the same results.
func TestWriteRound(t *testing.T) {
	srv := redistest.Start(t) // a fresh redis-server: no script cached
	testWriteRound(t, open(t, redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "t:round:"}))
}

// The same on a three-master Redis Cluster: both scripts' keys share the
// store's hash tag, so the pipeline goes to one node.
func TestWriteRoundCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	testWriteRound(t, open(t, redisstore.Config{Addrs: c.Addrs(), KeyPrefix: "t:round:"}))
}

func testWriteRound(t *testing.T, s *redisstore.Store) {
	ctx := context.Background()
	feed, err := s.WatchBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	keys := []string{"a", "b", "a"}
	windows := []time.Duration{time.Minute, time.Minute, time.Minute}
	for round, want := range [][]int64{{1, 1, 2}, {3, 2, 4}} {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(round + 1)}), 32)
		ban := state.Ban{Prefix: p, Expires: now.Add(time.Minute), Reason: "test", Server: "pbx-a", Created: now}
		counts, putErr, incrErr := s.WriteRound(ctx, []state.Ban{ban}, keys, windows)
		if putErr != nil || incrErr != nil {
			t.Fatalf("round %d: WriteRound: %v, %v", round, putErr, incrErr)
		}
		if !slices.Equal(counts, want) {
			t.Fatalf("round %d: counts %v, want %v", round, counts, want)
		}
		got, err := s.ListBans(ctx)
		if err != nil || !slices.ContainsFunc(got, func(b state.Ban) bool { return b.Prefix == p }) {
			t.Fatalf("round %d: ListBans = %v, %v; want %v in it", round, got, err, p)
		}
		for {
			select {
			case ev := <-feed:
				if ev.Kind == state.Resync {
					continue
				}
				if ev.Kind != state.Added || ev.Ban.Prefix != p {
					t.Fatalf("round %d: feed %+v, want %v added", round, ev, p)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: no feed message", round)
			}
			break
		}
	}
	// Counters only, and bans only.
	counts, putErr, incrErr := s.WriteRound(ctx, nil, []string{"b"}, []time.Duration{time.Minute})
	if putErr != nil || incrErr != nil || !slices.Equal(counts, []int64{3}) {
		t.Fatalf("counters only: %v, %v, %v", counts, putErr, incrErr)
	}
	ban := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.9/32"), Permanent: true, Reason: "test", Server: "pbx-a", Created: now}
	if _, putErr, incrErr = s.WriteRound(ctx, []state.Ban{ban}, nil, nil); putErr != nil || incrErr != nil {
		t.Fatalf("bans only: %v, %v", putErr, incrErr)
	}
	if _, putErr, _ = s.WriteRound(ctx, []state.Ban{{}}, keys, windows); putErr == nil {
		t.Fatal("WriteRound took an invalid ban")
	}
}
