package finder

import (
	"context"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// index is an in-memory copy of the store's registrations, reloaded every
// Config.IndexRefresh, so that a dialLocal hit costs no store round trip.
// A miss asks the store (a phone that registered since the last reload is
// found at once); a hit may be up to IndexRefresh old, which at worst sends
// a call to a server the phone just left, whose inter-server context then
// fails it without bouncing it on. A snapshot older than HeartbeatTTL
// (store unreachable) is not used: dead servers could not be noticed.
type index struct {
	st     state.Registrations
	now    func() time.Time
	maxAge time.Duration

	mu     sync.RWMutex
	byName map[string][]state.Registration // by AOR and by endpoint name
	loaded time.Time
	size   int
}

func (x *index) refresh(ctx context.Context) error {
	all, err := x.st.AllRegistrations(ctx)
	if err != nil {
		return err
	}
	m := make(map[string][]state.Registration, len(all))
	for _, r := range all {
		m[r.AOR] = append(m[r.AOR], r)
		if r.Endpoint != "" && r.Endpoint != r.AOR {
			m[r.Endpoint] = append(m[r.Endpoint], r)
		}
	}
	x.mu.Lock()
	x.byName, x.loaded, x.size = m, x.now(), len(all)
	x.mu.Unlock()
	return nil
}

func (x *index) locate(ctx context.Context, name string) ([]state.Registration, error) {
	now := x.now()
	x.mu.RLock()
	regs, loaded := x.byName[name], x.loaded
	x.mu.RUnlock()
	if !loaded.IsZero() && now.Sub(loaded) <= x.maxAge {
		live := make([]state.Registration, 0, len(regs))
		for _, r := range regs {
			if r.Expires.After(now) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			return live, nil
		}
	}
	return x.st.LookupAOR(ctx, name)
}
