package statetest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// BatchBans is the optional batch interface app/intrusion uses when a store
// has it (intrusion.BatchBans).
type BatchBans interface {
	state.Store
	IncrMany(ctx context.Context, keys []string, windows []time.Duration) ([]int64, error)
	PutBans(ctx context.Context, bans []state.Ban) error
}

// RunBatch runs the batch conformance tests. open2 returns two Stores on one
// fresh state for t (the writer and another agent's view; a store without a
// second view may return the same one twice).
func RunBatch(t *testing.T, open2 func(t *testing.T) (w, other BatchBans)) {
	t.Run("IncrMany", func(t *testing.T) { w, _ := open2(t); checkIncrMany(t, w) })
	t.Run("PutBans", func(t *testing.T) { w, other := open2(t); checkPutBans(t, w, other, 1300) })
	t.Run("BadBatch", func(t *testing.T) { w, _ := open2(t); checkBadBatch(t, w) })
}

func checkIncrMany(t *testing.T, s BatchBans) {
	ctx := context.Background()
	if _, err := s.Incr(ctx, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	// More keys than one script call takes, with repeats in the batch.
	var keys []string
	var windows []time.Duration
	for i := range 1100 {
		keys = append(keys, fmt.Sprintf("k%d", i%600))
		windows = append(windows, time.Minute)
	}
	keys = append(keys, "a", "short", "a", "short")
	windows = append(windows, time.Minute, 200*time.Millisecond, time.Minute, 200*time.Millisecond)
	got, err := s.IncrMany(ctx, keys, windows)
	if err != nil {
		t.Fatalf("IncrMany: %v", err)
	}
	if len(got) != len(keys) {
		t.Fatalf("IncrMany returned %d values for %d keys", len(got), len(keys))
	}
	for i := range 1100 {
		if want := int64(i/600 + 1); got[i] != want {
			t.Fatalf("value %d (%s) = %d, want %d", i, keys[i], got[i], want)
		}
	}
	if tail := got[1100:]; tail[0] != 2 || tail[1] != 1 || tail[2] != 3 || tail[3] != 2 {
		t.Fatalf("a, short, a, short = %v, want [2 1 3 2]", tail)
	}
	if n, err := s.Incr(ctx, "k5", time.Minute); err != nil || n != 3 {
		t.Fatalf("Incr after IncrMany = %d, %v; want 3", n, err)
	}
	// The window started with the first increment: the counter expires.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.IncrMany(ctx, []string{"short"}, []time.Duration{time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if n[0] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter with a 200 ms window still at %d", n[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err := s.IncrMany(ctx, nil, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty IncrMany = %v, %v", got, err)
	}
}

func checkBadBatch(t *testing.T, s BatchBans) {
	ctx := context.Background()
	if _, err := s.IncrMany(ctx, []string{"a", "b"}, []time.Duration{time.Minute}); err == nil {
		t.Error("IncrMany with fewer windows than keys: no error")
	}
	if _, err := s.IncrMany(ctx, []string{"a"}, []time.Duration{0}); err == nil {
		t.Error("IncrMany with a zero window: no error")
	}
	good := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true}
	bad := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.2/32")} // temporary without expiry
	if err := s.PutBans(ctx, []state.Ban{good, bad}); err == nil {
		t.Error("PutBans with a temporary ban without expiry: no error")
	}
	if bans, err := s.ListBans(ctx); err != nil || len(bans) != 0 {
		t.Errorf("after a rejected batch, ListBans = %v, %v; want nothing stored", bans, err)
	}
	if err := s.PutBans(ctx, nil); err != nil {
		t.Errorf("empty PutBans: %v", err)
	}
}

// checkPutBans stores n bans in one call on w and checks that both stores
// list them and both watchers see every one, in order.
func checkPutBans(t *testing.T, w, other BatchBans, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().Truncate(time.Millisecond)
	// An old ban of the first prefix is replaced by the batch's.
	if err := w.PutBan(ctx, state.Ban{Prefix: netip.MustParsePrefix("10.0.0.0/32"), Expires: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	watches := make([]<-chan state.BanEvent, 0, 2)
	for _, s := range []BatchBans{w, other} {
		ch, err := s.WatchBans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, ch)
	}
	bans := make([]state.Ban, n)
	for i := range bans {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		bans[i] = state.Ban{Prefix: netip.PrefixFrom(a, 32), Expires: now.Add(time.Hour), Reason: "r", Server: "pbx-a",
			Strikes: int64(i), Created: now}
		if i%3 == 0 {
			bans[i].Permanent, bans[i].Expires = true, time.Time{}
		}
	}
	// Unmasked and permanent-with-expiry spellings are normalised.
	bans[1].Prefix = netip.MustParsePrefix("10.9.9.9/16")
	bans[3].Expires = now.Add(time.Minute)
	want := map[netip.Prefix]state.Ban{}
	for _, b := range bans {
		b.Prefix = b.Prefix.Masked()
		if b.Permanent {
			b.Expires = time.Time{}
		}
		want[b.Prefix] = b
	}
	if err := w.PutBans(ctx, bans); err != nil {
		t.Fatalf("PutBans: %v", err)
	}
	for _, s := range []BatchBans{w, other} {
		list, err := s.ListBans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(want) {
			t.Fatalf("ListBans has %d bans, want %d", len(list), len(want))
		}
		for _, b := range list {
			if !sameBan(b, want[b.Prefix]) {
				t.Fatalf("listed %+v, want %+v", b, want[b.Prefix])
			}
		}
	}
	for wi, ch := range watches {
		for i, b := range bans {
			var e state.BanEvent
			select {
			case e = <-ch:
			case <-ctx.Done():
				t.Fatalf("watcher %d: got %d of %d bans", wi, i, len(bans))
			}
			if e.Kind != state.Added || !sameBan(e.Ban, want[b.Prefix.Masked()]) || e.Ban.Prefix != b.Prefix.Masked() {
				t.Fatalf("watcher %d event %d = %+v, want Added %+v", wi, i, e, want[b.Prefix.Masked()])
			}
		}
	}
}
