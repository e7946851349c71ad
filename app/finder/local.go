package finder

import (
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// LocalView is this server's own contacts as its tracker last saw them. The
// AGI server trusts it over the store for its own server: it answers LOCAL
// while the store is unreachable, and a failed store write cannot hide a
// phone registered here. *Tracker implements it.
type LocalView interface {
	// LocalRegistrations returns the unexpired contacts whose AOR or endpoint
	// is name; ok is false until the tracker has synchronised once.
	LocalRegistrations(name string) (regs []state.Registration, ok bool)
}

// localView is the tracker's contacts indexed by AOR and endpoint name, for
// readers outside the tracker's goroutine.
type localView struct {
	mu     sync.RWMutex
	byName map[string]map[contactKey]state.Registration
}

func (v *localView) names(r state.Registration) []string {
	if r.Endpoint != "" && r.Endpoint != r.AOR {
		return []string{r.AOR, r.Endpoint}
	}
	return []string{r.AOR}
}

func (v *localView) put(k contactKey, r state.Registration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byName == nil {
		v.byName = map[string]map[contactKey]state.Registration{}
	}
	for _, n := range v.names(r) {
		if v.byName[n] == nil {
			v.byName[n] = map[contactKey]state.Registration{}
		}
		v.byName[n][k] = r
	}
}

func (v *localView) del(k contactKey, r state.Registration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range v.names(r) {
		delete(v.byName[n], k)
		if len(v.byName[n]) == 0 {
			delete(v.byName, n)
		}
	}
}

func (v *localView) replace(known map[contactKey]state.Registration) {
	m := make(map[string]map[contactKey]state.Registration, len(known))
	for k, r := range known {
		for _, n := range v.names(r) {
			if m[n] == nil {
				m[n] = map[contactKey]state.Registration{}
			}
			m[n][k] = r
		}
	}
	v.mu.Lock()
	v.byName = m
	v.mu.Unlock()
}

func (v *localView) get(name string, now time.Time) []state.Registration {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []state.Registration
	for _, r := range v.byName[name] {
		if r.Expires.After(now) {
			out = append(out, r)
		}
	}
	return out
}

// LocalRegistrations implements LocalView.
func (t *Tracker) LocalRegistrations(name string) ([]state.Registration, bool) {
	if !t.ready.Load() {
		return nil, false
	}
	return t.view.get(name, t.deps.Now()), true
}
