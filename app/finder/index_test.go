package finder

import (
	"context"
	"testing"
	"time"
)

func TestIndex(t *testing.T) {
	st := newMemStore()
	now := time.Unix(1795609100, 0)
	st.now = func() time.Time { return now }
	ctx := context.Background()
	_ = st.Heartbeat(ctx, "aim-b", 100*time.Hour)
	x := &index{st: st, now: func() time.Time { return now }, maxAge: 10 * time.Second}

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
