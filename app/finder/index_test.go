package finder

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestIndex(t *testing.T) {
	st := newMemStore()
	now := time.Unix(1795609100, 0)
	st.now = func() time.Time { return now }
	ctx := context.Background()
	_ = st.Heartbeat(ctx, "aim-b", 100*time.Hour)
	x := newIndex(st, func() time.Time { return now }, 10*time.Second)

	seed := func(aor, ep string, ttl time.Duration) {
		reg := testReg("aim-b", aor, now.Add(ttl))
		reg.Endpoint = ep
		_ = st.PutRegistration(ctx, reg)
	}
	seed("1001", "1001", time.Hour)
	seed("1002-desk", "1002", time.Minute)
	if err := x.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	lookups := st.lookups
	got, _ := x.locate(ctx, "1001")
	if len(got) != 1 || st.lookups != lookups {
		t.Fatalf("hit: %d registrations, %d store lookups", len(got), st.lookups-lookups)
	}
	if got, _ := x.locate(ctx, "1002"); len(got) != 1 || got[0].AOR != "1002-desk" {
		t.Fatalf("by endpoint name: %+v", got)
	}
	// A phone registered after the refresh: the miss asks the store.
	seed("1003", "1003", time.Hour)
	if got, _ := x.locate(ctx, "1003"); len(got) != 1 || st.lookups != lookups+1 {
		t.Fatalf("miss: %+v after %d lookups", got, st.lookups-lookups)
	}
	// Expired in the index: not returned (the store agrees).
	now = now.Add(2 * time.Minute)
	if got, _ := x.locate(ctx, "1002"); len(got) != 0 {
		t.Fatalf("expired registration returned: %+v", got)
	}
	// A snapshot older than maxAge (store unreachable) is not trusted.
	now = now.Add(time.Minute)
	st.setFail(errDown)
	if _, err := x.locate(ctx, "1001"); err == nil {
		t.Fatal("stale snapshot used while the store is down")
	}
}

// TestIndexRevalidatesHits: a phone that moved is answered from memory at
// most once more, then the background re-read corrects the entry.
func TestIndexRevalidatesHits(t *testing.T) {
	st := newMemStore()
	var mu sync.Mutex
	now := time.Unix(1795609100, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st.now = clock
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = st.Heartbeat(ctx, "aim-b", 100*time.Hour)
	_ = st.Heartbeat(ctx, "aim-c", 100*time.Hour)
	x := newIndex(st, clock, time.Minute)
	done := make(chan struct{})
	go func() { defer close(done); x.revalidator(ctx, time.Second) }()
	defer func() { cancel(); <-done }()

	_ = st.PutRegistration(ctx, testReg("aim-b", "1001", now.Add(time.Hour)))
	if err := x.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The phone moves from aim-b to aim-c.
	_ = st.DeleteRegistration(ctx, "aim-b", "1001", "sip:1001@192.0.2.1:5060")
	_ = st.PutRegistration(ctx, testReg("aim-c", "1001", now.Add(time.Hour)))
	if got, _ := x.locate(ctx, "1001"); len(got) != 1 || got[0].Server != "aim-b" {
		t.Fatalf("fresh hit: %+v", got)
	}
	mu.Lock()
	now = now.Add(2 * revalidateAfter)
	mu.Unlock()
	if got, _ := x.locate(ctx, "1001"); len(got) != 1 || got[0].Server != "aim-b" {
		t.Fatalf("stale hit should still answer from memory: %+v", got)
	}
	waitFor(t, "revalidated entry", func() bool {
		got, _ := x.locate(ctx, "1001")
		return len(got) == 1 && got[0].Server == "aim-c"
	})
}

// TestIndexDropsDeadServer: a server whose heartbeat ended stops being a
// location through the index too: the next hit on one of its entries is
// answered from memory once more and re-read in the background (the store
// returns only live servers), and a reload drops all of them.
func TestIndexDropsDeadServer(t *testing.T) {
	st := newMemStore()
	var mu sync.Mutex
	now := time.Unix(1795609100, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st.now = clock
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = st.Heartbeat(ctx, "aim-b", 10*time.Second)
	_ = st.PutRegistration(ctx, testReg("aim-b", "1001", now.Add(time.Hour)))
	_ = st.PutRegistration(ctx, testReg("aim-b", "1002", now.Add(time.Hour)))
	x := newIndex(st, clock, time.Minute)
	if err := x.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); x.revalidator(ctx, time.Second) }()
	defer func() { cancel(); <-done }()

	mu.Lock()
	now = now.Add(20 * time.Second) // aim-b's heartbeat has ended
	mu.Unlock()
	if got, _ := x.locate(ctx, "1001"); len(got) != 1 {
		t.Fatalf("the first hit after the death is answered from memory: %+v", got)
	}
	waitFor(t, "dead server's entry re-read", func() bool {
		got, err := x.locate(ctx, "1001")
		return err == nil && len(got) == 0
	})
	if err := x.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	lookups := st.lookups
	if got, _ := x.locate(ctx, "1002"); len(got) != 0 || st.lookups != lookups+1 {
		t.Fatalf("after a reload: %+v, %d store lookups (want a miss asking the store)", got, st.lookups-lookups)
	}
}
