package blf

import (
	"context"
	"maps"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/state"
)

// source is one device on one server.
type source struct{ server, device string }

// fan is the fan-out's state, owned by the fanout goroutine.
type fan struct {
	view     map[string]map[source]string // Stasis: name -> other servers' devices -> state
	live     map[string]bool              // nil until the first successful read: all count
	lastPoll time.Time
}

// fanout turns the store's feed into desired Stasis: states.
func (m *Monitor) fanout(ctx context.Context) {
	f := &fan{view: map[string]map[source]string{}}
	m.pollLive(ctx, f)
	feed := m.watch(ctx)
	if feed == nil {
		return
	}
	m.reload(ctx, f)
	rewritePending := !m.rewriteAll(ctx, f)

	beat := time.NewTicker(m.cfg.HeartbeatInterval)
	defer beat.Stop()
	retry := time.NewTicker(m.cfg.RetryInterval)
	defer retry.Stop()
	var reconcile <-chan time.Time
	if m.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(m.cfg.ReconcileInterval)
		defer t.Stop()
		reconcile = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-feed:
			if !ok {
				if feed = m.watch(ctx); feed == nil {
					return
				}
				m.reload(ctx, f)
				continue
			}
			m.apply(ctx, f, ev, time.Now())
		case <-beat.C:
			if m.pollLive(ctx, f) {
				// The store hides a dead server's states: one that is back
				// (or late with its first beat) must be read again.
				m.reload(ctx, f)
			}
		case <-m.rewrite:
			rewritePending = !m.rewriteAll(ctx, f)
		case <-reconcile:
			rewritePending = !m.rewriteAll(ctx, f)
		case <-retry.C:
			if rewritePending {
				rewritePending = !m.rewriteAll(ctx, f)
			}
			m.w.retryFailed()
		}
	}
}

// watch subscribes to the feed, retrying until it works or ctx ends (nil).
func (m *Monitor) watch(ctx context.Context) <-chan state.DeviceEvent {
	for {
		feed, err := m.store.WatchDeviceStates(ctx)
		if err == nil {
			m.once.forget(causeStoreWatch + "\x00")
			return feed
		}
		if ctx.Err() != nil {
			return nil
		}
		m.fail(causeStoreWatch, "", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.cfg.RetryInterval):
		}
	}
}

func (m *Monitor) apply(ctx context.Context, f *fan, ev state.DeviceEvent, at time.Time) {
	switch ev.Kind {
	case state.Resync:
		m.reload(ctx, f)
		return
	case state.Added, state.Removed:
	default:
		return
	}
	ds := ev.State
	name, _, ok := m.mapping.Map(ds.Device)
	if !ok {
		if !isStasis(ds.Device) && ds.Server != m.server {
			m.fail(causeUnmapped, ds.Device, errUnmapped(ds.Device, m.cfg.Devices), "server", ds.Server)
		}
		return
	}
	if ds.Server == m.server {
		// Our own phones never count on our own Stasis: states, but the
		// name exists now: it gets UNAVAILABLE until another server has it.
		if _, known := f.view[name]; !known {
			f.view[name] = map[source]string{}
			m.recompute(f, name, want{})
		}
		return
	}
	src := source{ds.Server, ds.Device}
	if ev.Kind == state.Removed {
		delete(f.view[name], src)
	} else {
		if f.view[name] == nil {
			f.view[name] = map[source]string{}
		}
		f.view[name][src] = ds.State
		if f.live != nil && !f.live[ds.Server] && at.Sub(f.lastPoll) > 250*time.Millisecond {
			// A server we think dead (or have not seen yet) publishes: re-read
			// the live servers now rather than at the next beat.
			if m.pollLive(ctx, f) {
				m.reload(ctx, f)
				return
			}
		}
	}
	m.emit(Hop{Server: m.server, Stage: "feed", Name: name, State: ds.State, Src: ds.Updated, At: at})
	m.recompute(f, name, want{src: ds.Updated, feed: at})
}

// recompute sets the desired state of one name from the live other servers.
func (m *Monitor) recompute(f *fan, name string, w want) {
	states := make([]string, 0, len(f.view[name]))
	for src, st := range f.view[name] {
		if f.live == nil || f.live[src.server] {
			states = append(states, st)
		}
	}
	w.state = stasisValue(Aggregate(states...))
	m.w.set(name, w)
}

func (m *Monitor) recomputeAll(f *fan) {
	for name := range f.view {
		m.recompute(f, name, want{})
	}
}

// pollLive re-reads the live servers; it reports whether the set changed.
func (m *Monitor) pollLive(ctx context.Context, f *fan) bool {
	f.lastPoll = time.Now()
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	servers, err := m.store.Servers(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			m.fail(causeStoreRead, "servers", err)
		}
		return false // keep the last known set
	}
	m.once.forget(causeStoreRead + "\x00servers")
	live := make(map[string]bool, len(servers))
	for s := range servers {
		live[s] = true
	}
	if f.live != nil && maps.Equal(live, f.live) {
		return false
	}
	for s := range f.live {
		if !live[s] {
			m.log.Info("blf: server stopped beating; its devices no longer count", "server", s)
		}
	}
	f.live = live
	return true
}

// reload re-reads every device state (start, Resync, lost feed).
func (m *Monitor) reload(ctx context.Context, f *fan) {
	for {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
		all, err := m.store.DeviceStates(cctx)
		cancel()
		if err == nil {
			m.once.forget(causeStoreRead + "\x00devices")
			view := map[string]map[source]string{}
			for _, ds := range all {
				name, _, ok := m.mapping.Map(ds.Device)
				if !ok {
					continue
				}
				if view[name] == nil {
					view[name] = map[source]string{}
				}
				if ds.Server != m.server {
					view[name][source{ds.Server, ds.Device}] = ds.State
				}
			}
			// Names that disappeared must fall back to UNAVAILABLE.
			for name := range f.view {
				if view[name] == nil {
					view[name] = map[source]string{}
				}
			}
			f.view = view
			m.recomputeAll(f)
			return
		}
		if ctx.Err() != nil {
			return
		}
		m.fail(causeStoreRead, "devices", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.cfg.RetryInterval):
		}
	}
}

// rewriteAll lists the Stasis: states Asterisk really has (after a
// reconnect they may be stale astdb values), and corrects every one that
// differs from what it should be, including names nobody knows any more
// (-> UNAVAILABLE). false means the list failed; it is retried.
func (m *Monitor) rewriteAll(ctx context.Context, f *fan) bool {
	actual, err := m.ari.StasisStates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.fail(causeARIList, "", err)
		}
		return false
	}
	m.once.forget(causeARIList + "\x00")
	m.w.observe(actual)
	for name := range actual {
		if _, known := f.view[name]; !known {
			f.view[name] = map[source]string{} // stale: nobody has it -> UNAVAILABLE
		}
	}
	m.recomputeAll(f)
	return true
}

func isStasis(device string) bool {
	return len(device) >= len(ari.StasisPrefix) && device[:len(ari.StasisPrefix)] == ari.StasisPrefix
}
