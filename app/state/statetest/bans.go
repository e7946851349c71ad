package statetest

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func testIncr(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	for want := int64(1); want <= 3; want++ {
		n, err := s.Incr(c, "a", time.Minute)
		if err != nil || n != want {
			t.Fatalf("Incr a = %d, %v; want %d", n, err, want)
		}
	}
	if n, err := s.Incr(c, "b", time.Minute); err != nil || n != 1 {
		t.Fatalf("Incr b = %d, %v; want 1 (counters are independent)", n, err)
	}
	if err := s.Reset(c, "a"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if n, err := s.Incr(c, "a", time.Minute); err != nil || n != 1 {
		t.Fatalf("Incr after Reset = %d, %v; want 1", n, err)
	}
	if err := s.Reset(c, "never-set"); err != nil {
		t.Fatalf("Reset of a missing counter: %v", err)
	}
	if _, err := s.Incr(c, "z", 0); err == nil {
		t.Fatalf("Incr with zero window: no error")
	}
}

func testIncrConcurrent(t *testing.T, open Open) {
	s1, s2, c := open(t), open(t), ctx(t)
	const workers, each = 20, 25
	seen := make([]bool, workers*each+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			for range each {
				n, err := s.Incr(c, "k", time.Minute)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if n < 1 || int(n) >= len(seen) || seen[n] {
					mu.Unlock()
					t.Errorf("Incr returned %d twice or out of range", n)
					return
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Incr: %v", err)
	}
	n, err := s1.Incr(c, "k", time.Minute)
	if err != nil || n != workers*each+1 {
		t.Fatalf("final Incr = %d, %v; want %d", n, err, workers*each+1)
	}
}

func testIncrExpires(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	const window = 200 * time.Millisecond
	if n, err := s.Incr(c, "k", window); err != nil || n != 1 {
		t.Fatalf("Incr = %d, %v; want 1", n, err)
	}
	start := time.Now()
	// A later increment must not extend the window.
	if n, err := s.Incr(c, "k", time.Hour); err != nil || n != 2 {
		t.Fatalf("Incr = %d, %v; want 2", n, err)
	}
	eventually(t, "counter to expire", func() bool {
		n, err := s.Incr(c, "k", window)
		if err != nil {
			t.Fatalf("Incr: %v", err)
		}
		return n == 1
	})
	if e := time.Since(start); e < window-20*time.Millisecond {
		t.Fatalf("counter expired after %v, before its %v window", e, window)
	}
}

func ban(prefix string, d time.Duration) state.Ban {
	b := state.Ban{Prefix: netip.MustParsePrefix(prefix), Reason: "test", Server: "pbx1",
		Strikes: 3, Created: time.Now().Round(time.Millisecond)}
	if d == 0 {
		b.Permanent = true
	} else {
		b.Expires = time.Now().Add(d).Round(time.Millisecond)
	}
	return b
}

func listBans(t *testing.T, s state.Store) map[netip.Prefix]state.Ban {
	t.Helper()
	bans, err := s.ListBans(ctx(t))
	if err != nil {
		t.Fatalf("ListBans: %v", err)
	}
	m := make(map[netip.Prefix]state.Ban, len(bans))
	for _, b := range bans {
		if _, dup := m[b.Prefix]; dup {
			t.Fatalf("ListBans lists %v twice", b.Prefix)
		}
		m[b.Prefix] = b
	}
	return m
}

func sameBan(a, b state.Ban) bool {
	return a.Prefix == b.Prefix && a.Permanent == b.Permanent && a.Expires.Equal(b.Expires) &&
		a.Reason == b.Reason && a.Server == b.Server && a.Strikes == b.Strikes && a.Created.Equal(b.Created)
}

func testBanPutListDelete(t *testing.T, open Open) {
	s, other, c := open(t), open(t), ctx(t)
	if got := listBans(t, s); len(got) != 0 {
		t.Fatalf("fresh store lists %d bans", len(got))
	}
	perm := ban("192.0.2.1/32", 0)
	temp := ban("198.51.100.7/32", time.Hour)
	v6 := ban("2001:db8:1:2::1234/64", time.Hour) // host bits are dropped
	for _, b := range []state.Ban{perm, temp, v6} {
		if err := s.PutBan(c, b); err != nil {
			t.Fatalf("PutBan %v: %v", b.Prefix, err)
		}
	}
	got := listBans(t, other)
	if len(got) != 3 {
		t.Fatalf("ListBans = %v; want 3 bans", got)
	}
	if !sameBan(got[perm.Prefix], perm) || !sameBan(got[temp.Prefix], temp) {
		t.Fatalf("ListBans = %+v; want %+v and %+v", got, perm, temp)
	}
	if g := got[netip.MustParsePrefix("2001:db8:1:2::/64")]; !g.Expires.Equal(v6.Expires) {
		t.Fatalf("IPv6 ban not stored under its masked prefix: %+v", got)
	}
	// Replace: the temporary ban becomes permanent.
	temp2 := temp
	temp2.Permanent, temp2.Expires, temp2.Strikes = true, time.Time{}, 9
	if err := other.PutBan(c, temp2); err != nil {
		t.Fatalf("PutBan replace: %v", err)
	}
	got = listBans(t, s)
	if len(got) != 3 || !sameBan(got[temp.Prefix], temp2) {
		t.Fatalf("after replace ListBans = %+v; want %+v among 3", got, temp2)
	}
	if err := s.DeleteBan(c, perm.Prefix); err != nil {
		t.Fatalf("DeleteBan: %v", err)
	}
	if err := s.DeleteBan(c, netip.MustParsePrefix("2001:db8:1:2::99/64")); err != nil {
		t.Fatalf("DeleteBan v6: %v", err)
	}
	got = listBans(t, other)
	if len(got) != 1 || !sameBan(got[temp.Prefix], temp2) {
		t.Fatalf("after delete ListBans = %+v; want only %v", got, temp.Prefix)
	}
	if err := s.DeleteBan(c, perm.Prefix); err != nil {
		t.Fatalf("DeleteBan of a missing ban: %v", err)
	}
}

func testBanBadInput(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	if err := s.PutBan(c, state.Ban{Permanent: true}); err == nil {
		t.Errorf("PutBan without prefix: no error")
	}
	if err := s.PutBan(c, state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32")}); err == nil {
		t.Errorf("PutBan temporary without expiry: no error")
	}
	if err := s.DeleteBan(c, netip.Prefix{}); err == nil {
		t.Errorf("DeleteBan of an invalid prefix: no error")
	}
	if got := listBans(t, s); len(got) != 0 {
		t.Errorf("bad bans were stored: %v", got)
	}
}

func testBanExpires(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	short := ban("203.0.113.5/32", 300*time.Millisecond)
	if err := s.PutBan(c, short); err != nil {
		t.Fatalf("PutBan: %v", err)
	}
	if err := s.PutBan(c, ban("203.0.113.6/32", 0)); err != nil {
		t.Fatalf("PutBan: %v", err)
	}
	if got := listBans(t, s); len(got) != 2 {
		t.Fatalf("ListBans = %v; want 2", got)
	}
	eventually(t, "temporary ban to expire", func() bool {
		got := listBans(t, s)
		_, there := got[short.Prefix]
		return !there && len(got) == 1
	})
	if time.Now().Before(short.Expires.Add(-20 * time.Millisecond)) {
		t.Fatalf("ban gone before its expiry %v", short.Expires)
	}
}

// testScanBans checks the optional state.BanScanner on more bans than one
// page holds: each unexpired ban exactly once, as ListBans has it, and fn's
// error ends the scan.
func testScanBans(t *testing.T, open Open) {
	s, c := open(t), ctx(t)
	sc, ok := s.(state.BanScanner)
	if !ok {
		t.Skip("store has no ScanBans")
	}
	const n = 9000
	bans := make([]state.Ban, 0, n+2)
	for i := range n {
		b := ban(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()+"/32", 0)
		if i%3 == 0 {
			b = ban(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()+"/32", time.Hour)
		}
		bans = append(bans, b)
	}
	short := ban("203.0.113.9/32", 100*time.Millisecond)
	bans = append(bans, short, ban("2001:db8:9::/64", 0))
	if bs, ok := s.(interface {
		PutBans(context.Context, []state.Ban) error
	}); ok {
		if err := bs.PutBans(c, bans); err != nil {
			t.Fatalf("PutBans: %v", err)
		}
	} else {
		for _, b := range bans {
			if err := s.PutBan(c, b); err != nil {
				t.Fatalf("PutBan: %v", err)
			}
		}
	}
	eventually(t, "short ban to expire", func() bool {
		_, there := listBans(t, s)[short.Prefix]
		return !there
	})
	want := listBans(t, s)
	if len(want) != n+1 {
		t.Fatalf("ListBans has %d bans, want %d", len(want), n+1)
	}
	got := map[netip.Prefix]state.Ban{}
	pages := 0
	err := sc.ScanBans(c, func(page []state.Ban) error {
		pages++
		if len(page) == 0 {
			t.Errorf("ScanBans passed an empty page")
		}
		for _, b := range page {
			if _, dup := got[b.Prefix]; dup {
				t.Errorf("ScanBans passed %v twice", b.Prefix)
			}
			got[b.Prefix] = b
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanBans: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ScanBans passed %d bans in %d pages, ListBans has %d", len(got), pages, len(want))
	}
	for p, w := range want {
		if !sameBan(got[p], w) {
			t.Fatalf("ScanBans has %+v, ListBans %+v", got[p], w)
		}
	}
	stop := errors.New("enough")
	calls := 0
	err = sc.ScanBans(c, func([]state.Ban) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ScanBans after fn's error: %v after %d calls; want fn's error after 1", err, calls)
	}
}

func testWatchBans(t *testing.T, open Open) {
	s1, s2, c := open(t), open(t), ctx(t)
	w1, err := s1.WatchBans(c)
	if err != nil {
		t.Fatalf("WatchBans: %v", err)
	}
	w2, err := s2.WatchBans(c)
	if err != nil {
		t.Fatalf("WatchBans: %v", err)
	}
	b := ban("192.0.2.9/32", time.Hour)
	if err := s1.PutBan(c, b); err != nil {
		t.Fatalf("PutBan: %v", err)
	}
	for i, w := range []<-chan state.BanEvent{w1, w2} {
		e := recv(t, w, "ban added")
		if e.Kind != state.Added || !sameBan(e.Ban, b) {
			t.Fatalf("watcher %d got %+v; want Added %+v", i+1, e, b)
		}
	}
	if err := s2.DeleteBan(c, b.Prefix); err != nil {
		t.Fatalf("DeleteBan: %v", err)
	}
	for i, w := range []<-chan state.BanEvent{w1, w2} {
		e := recv(t, w, "ban removed")
		if e.Kind != state.Removed || e.Ban.Prefix != b.Prefix {
			t.Fatalf("watcher %d got %+v; want Removed %v", i+1, e, b.Prefix)
		}
	}
}

func testWatchEnds(t *testing.T, open Open) {
	s := open(t)
	c, cancel := context.WithCancel(ctx(t))
	bans, err := s.WatchBans(c)
	if err != nil {
		t.Fatalf("WatchBans: %v", err)
	}
	devs, err := s.WatchDeviceStates(c)
	if err != nil {
		t.Fatalf("WatchDeviceStates: %v", err)
	}
	cancel()
	drained := func() bool {
		for {
			select {
			case _, ok := <-bans:
				if !ok {
					return true
				}
			case <-time.After(wait):
				return false
			}
		}
	}
	if !drained() {
		t.Fatalf("ban feed not closed after its context ended")
	}
	for {
		select {
		case _, ok := <-devs:
			if !ok {
				return
			}
		case <-time.After(wait):
			t.Fatalf("device feed not closed after its context ended")
		}
	}
}

func testWatchEndsOnClose(t *testing.T, open Open) {
	s := open(t)
	bans, err := s.WatchBans(ctx(t))
	if err != nil {
		t.Fatalf("WatchBans: %v", err)
	}
	devs, err := s.WatchDeviceStates(ctx(t))
	if err != nil {
		t.Fatalf("WatchDeviceStates: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, closed := range map[string]func() bool{
		"ban":    func() bool { _, ok := <-bans; return !ok },
		"device": func() bool { _, ok := <-devs; return !ok },
	} {
		done := make(chan bool, 1)
		go func() {
			for !closed() {
			}
			done <- true
		}()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatalf("%s feed still open after Close", name)
		}
	}
	if _, err := s.WatchBans(ctx(t)); err == nil {
		t.Fatalf("WatchBans after Close: no error")
	}
	if err := s.PutBan(ctx(t), ban("192.0.2.1/32", 0)); err == nil {
		t.Fatalf("PutBan after Close: no error")
	}
}
