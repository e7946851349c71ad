package intrusion

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

var errDown = errors.New("fake store: connection refused")

// fakeStore is an in-memory state.Bans with a working feed, shared by
// several monitors to play a cluster.
type fakeStore struct {
	clock    Clock
	mu       sync.Mutex
	counters map[string]fakeCounter
	bans     map[netip.Prefix]state.Ban
	watchers map[chan state.BanEvent]bool
	down     bool
	calls    map[string]int
}

type fakeCounter struct {
	n   int64
	exp time.Time
}

func newFakeStore(c Clock) *fakeStore {
	return &fakeStore{clock: c, counters: map[string]fakeCounter{}, bans: map[netip.Prefix]state.Ban{},
		watchers: map[chan state.BanEvent]bool{}, calls: map[string]int{}}
}

func (s *fakeStore) enter(op string) error {
	s.calls[op]++
	if s.down {
		return errDown
	}
	return nil
}

func (s *fakeStore) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("incr"); err != nil {
		return 0, err
	}
	now := s.clock.Now()
	c := s.counters[key]
	if !now.Before(c.exp) {
		c = fakeCounter{exp: now.Add(window)}
	}
	c.n++
	s.counters[key] = c
	return c.n, nil
}

func (s *fakeStore) Reset(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("reset"); err != nil {
		return err
	}
	delete(s.counters, key)
	return nil
}

func (s *fakeStore) counter(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters[key]
	if !s.clock.Now().Before(c.exp) {
		return 0
	}
	return c.n
}

func (s *fakeStore) publishLocked(ev state.BanEvent) {
	for ch := range s.watchers {
		select {
		case ch <- ev:
		default: // a stuck watcher would lose events in a real store too: resync
		}
	}
}

func (s *fakeStore) PutBan(ctx context.Context, b state.Ban) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("put"); err != nil {
		return err
	}
	s.bans[b.Prefix] = b
	s.publishLocked(state.BanEvent{Kind: state.Added, Ban: b})
	return nil
}

func (s *fakeStore) DeleteBan(ctx context.Context, p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("delete"); err != nil {
		return err
	}
	if _, ok := s.bans[p]; ok {
		delete(s.bans, p)
		s.publishLocked(state.BanEvent{Kind: state.Removed, Ban: state.Ban{Prefix: p}})
	}
	return nil
}

func (s *fakeStore) ListBans(ctx context.Context) ([]state.Ban, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("list"); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	var out []state.Ban
	for _, b := range s.bans {
		if b.Permanent || b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (s *fakeStore) WatchBans(ctx context.Context) (<-chan state.BanEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("watch"); err != nil {
		return nil, err
	}
	ch := make(chan state.BanEvent, 4096)
	s.watchers[ch] = true
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.watchers, ch)
		close(ch)
		s.mu.Unlock()
	}()
	return ch, nil
}

// setDown makes every call fail; coming back sends Resync like a store
// that reconnected.
func (s *fakeStore) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if !down {
		s.publishLocked(state.BanEvent{Kind: state.Resync})
	}
}

// inject writes a ban as another agent would, publishing it.
func (s *fakeStore) inject(b state.Ban) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bans[b.Prefix] = b
	s.publishLocked(state.BanEvent{Kind: state.Added, Ban: b})
}

// injectSilently changes the store without publishing (a lost event).
func (s *fakeStore) injectSilently(b state.Ban, remove bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if remove {
		delete(s.bans, b.Prefix)
		return
	}
	s.bans[b.Prefix] = b
}

func (s *fakeStore) ban(p netip.Prefix) (state.Ban, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bans[p]
	if ok && !b.Permanent && !b.Expires.After(s.clock.Now()) {
		return state.Ban{}, false
	}
	return b, ok
}

func (s *fakeStore) callCount(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// fakeBatchStore adds BatchBans.
type fakeBatchStore struct{ *fakeStore }

func (s fakeBatchStore) IncrMany(ctx context.Context, keys []string, windows []time.Duration) ([]int64, error) {
	out := make([]int64, len(keys))
	for i, k := range keys {
		n, err := s.Incr(ctx, k, windows[i])
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	s.mu.Lock()
	s.calls["incr_many"]++
	s.mu.Unlock()
	return out, nil
}

func (s fakeBatchStore) PutBans(ctx context.Context, bans []state.Ban) error {
	for _, b := range bans {
		if err := s.PutBan(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// fakeRoundStore adds RoundWriter.
type fakeRoundStore struct{ fakeBatchStore }

func (s fakeRoundStore) WriteRound(ctx context.Context, bans []state.Ban, keys []string, windows []time.Duration) ([]int64, error, error) {
	s.mu.Lock()
	s.calls["write_round"]++
	s.mu.Unlock()
	putErr := s.PutBans(ctx, bans)
	out := make([]int64, len(keys))
	for i, k := range keys {
		n, err := s.Incr(ctx, k, windows[i])
		if err != nil {
			return nil, putErr, err
		}
		out[i] = n
	}
	return out, putErr, nil
}

// fakeFirewall is an in-memory firewall.Firewall whose timeouts follow the
// clock; flush simulates `nft flush ruleset`.
type fakeFirewall struct {
	clock   Clock
	mu      sync.Mutex
	entries map[netip.Prefix]time.Time // zero: permanent
	missing bool
	addErr  error
	// checkErr, when set, is Check's error; checks counts Check calls.
	checkErr error
	checks   int
	adds     int // Add calls
	added    int // entries added
	inits    int
}

func newFakeFirewall(c Clock) *fakeFirewall {
	return &fakeFirewall{clock: c, entries: map[netip.Prefix]time.Time{}, missing: true}
}

func (f *fakeFirewall) Init(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inits++
	f.missing = false
	return nil
}

func (f *fakeFirewall) Add(ctx context.Context, entries []firewall.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds++
	if f.missing {
		return fmt.Errorf("fake firewall: add: %w", firewall.ErrMissing)
	}
	if f.addErr != nil {
		return f.addErr
	}
	now := f.clock.Now()
	for _, e := range entries {
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || e.Timeout < 0 {
			return fmt.Errorf("fake firewall: bad entry %v", e)
		}
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		f.entries[e.Prefix] = exp
		f.added++
	}
	return nil
}

func (f *fakeFirewall) Delete(ctx context.Context, ps []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing {
		return fmt.Errorf("fake firewall: delete: %w", firewall.ErrMissing)
	}
	for _, p := range ps {
		delete(f.entries, p)
	}
	return nil
}

func (f *fakeFirewall) List(ctx context.Context) ([]firewall.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing {
		return nil, fmt.Errorf("fake firewall: list: %w", firewall.ErrMissing)
	}
	now := f.clock.Now()
	var out []firewall.Entry
	for p, exp := range f.entries {
		switch {
		case exp.IsZero():
			out = append(out, firewall.Entry{Prefix: p})
		case exp.After(now):
			out = append(out, firewall.Entry{Prefix: p, Timeout: exp.Sub(now)})
		}
	}
	return out, nil
}

func (f *fakeFirewall) Check(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if f.checkErr != nil {
		return f.checkErr
	}
	if f.missing {
		return fmt.Errorf("fake firewall: table doorman: %w", firewall.ErrMissing)
	}
	return nil
}

func (f *fakeFirewall) Close() error { return nil }

func (f *fakeFirewall) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = map[netip.Prefix]time.Time{}
	f.missing = true
}

// has reports whether p is in the set now, and whether permanently.
func (f *fakeFirewall) has(p netip.Prefix) (in, permanent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.entries[p]
	if !ok {
		return false, false
	}
	if exp.IsZero() {
		return true, true
	}
	return exp.After(f.clock.Now()), false
}

func (f *fakeFirewall) snapshot() map[netip.Prefix]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.entries)
}

func (f *fakeFirewall) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
