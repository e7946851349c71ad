package finder

import (
	"context"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// index is an in-memory copy of the store's registrations, reloaded whole
// every Config.IndexRefresh, so that a dialLocal hit costs no store round
// trip. A miss asks the store (a phone that registered since the last
// reload is found at once). A hit older than revalidateAfter is answered
// from memory and re-read from the store in the background, so a phone that
// moved is dialed where it was at most once, not until the next reload (its
// old server's inter-server context fails that call without bouncing it).
// A snapshot older than maxAge (store unreachable) is not used: dead servers
// could not be noticed.
type index struct {
	st     state.Registrations
	now    func() time.Time
	maxAge time.Duration

	mu      sync.RWMutex
	byName  map[string]indexEntry // by AOR and by endpoint name
	loaded  time.Time
	size    int
	pending map[string]bool // names queued for revalidation
	queue   chan string
}

type indexEntry struct {
	regs  []state.Registration
	at    time.Time
	byAOR bool // every registration's AOR is the name: LookupAOR can revalidate it
}

// revalidateAfter: hits on entries older than this are re-read in the
// background (hot extensions cost one store read per second at most).
const revalidateAfter = time.Second

func newIndex(st state.Registrations, now func() time.Time, maxAge time.Duration) *index {
	return &index{st: st, now: now, maxAge: maxAge, pending: map[string]bool{}, queue: make(chan string, 1024)}
}

func (x *index) refresh(ctx context.Context) error {
	all, err := x.st.AllRegistrations(ctx)
	if err != nil {
		return err
	}
	now := x.now()
	m := make(map[string]indexEntry, len(all))
	for _, r := range all {
		e := m[r.AOR]
		e.regs, e.at, e.byAOR = append(e.regs, r), now, true
		m[r.AOR] = e
	}
	for _, r := range all {
		if r.Endpoint != "" && r.Endpoint != r.AOR {
			e := m[r.Endpoint]
			e.regs, e.at = append(e.regs, r), now
			e.byAOR = e.byAOR && r.AOR == r.Endpoint
			m[r.Endpoint] = e
		}
	}
	x.mu.Lock()
	x.byName, x.loaded, x.size = m, now, len(all)
	x.mu.Unlock()
	return nil
}

func (x *index) locate(ctx context.Context, name string) ([]state.Registration, error) {
	now := x.now()
	x.mu.RLock()
	e, loaded := x.byName[name], x.loaded
	x.mu.RUnlock()
	if !loaded.IsZero() && now.Sub(loaded) <= x.maxAge {
		live := make([]state.Registration, 0, len(e.regs))
		for _, r := range e.regs {
			if r.Expires.After(now) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			if e.byAOR && now.Sub(e.at) > revalidateAfter {
				x.revalidate(name)
			}
			return live, nil
		}
	}
	return x.st.LookupAOR(ctx, name)
}

// revalidate queues name for a background re-read; a full queue drops it
// (the next hit or reload catches up).
func (x *index) revalidate(name string) {
	if len(x.queue) == cap(x.queue) {
		return // saturated: skip the lock
	}
	x.mu.RLock()
	queued := x.pending[name]
	x.mu.RUnlock()
	if queued {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pending[name] {
		return
	}
	select {
	case x.queue <- name:
		x.pending[name] = true
	default:
	}
}

// revalidator re-reads queued names until ctx ends.
func (x *index) revalidator(ctx context.Context, timeout time.Duration) {
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case name = <-x.queue:
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		regs, err := x.st.LookupAOR(lctx, name)
		cancel()
		x.mu.Lock()
		delete(x.pending, name)
		if err == nil && x.byName != nil {
			if len(regs) == 0 {
				delete(x.byName, name)
			} else {
				x.byName[name] = indexEntry{regs: regs, at: x.now(), byAOR: true}
			}
		}
		x.mu.Unlock()
	}
}
