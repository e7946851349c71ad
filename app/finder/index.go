package finder

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// index is an in-memory copy of every registration in the store, kept
// current by the store's registration feed (state.RegistrationWatcher), so
// that a dialLocal costs no store round trip, hit or miss. It is loaded
// whole at start and after every Resync (a gap in the feed), then follows
// Added/Removed events; it hides a registration at its Expires and a
// server at its heartbeat's expiry by itself (Redis announces neither).
// Until the first load, and while the feed has been silent for longer than
// a heartbeat (every live server beats every heartbeat_ttl/3, so silence
// means the feed or the store is down), lookups go to the store.
type index struct {
	st     feedStore
	now    func() time.Time
	ttl    time.Duration // heartbeat_ttl: a server's expiry until its next beat, and the silence bound
	reload time.Duration // extra full reloads this often; 0: only at start and on Resync
	log    *slog.Logger
	// onReload reports each full reload (metrics); nil: none.
	onReload func(err error)

	tab   atomic.Pointer[table] // nil until the first load
	alive atomic.Pointer[map[string]time.Time]
	heard atomic.Int64 // unix nanos of the last feed event or load
	size  atomic.Int64 // registrations held

	// complete: servers whose every registration the index holds (alive at
	// the last load, or seen since). Only the feed goroutine uses it.
	complete map[string]bool
	failing  bool // the last load failed (logged once)
}

// indexShards splits the table so that applying an event or sweeping
// expired entries locks a small part of it, never every lookup.
const indexShards = 64

// feedStore is what the index needs of the store: the registrations, the
// servers' heartbeats (at a load) and the feed.
type feedStore interface {
	state.Registrations
	state.Cluster
	state.RegistrationWatcher
}

type table struct {
	seed   maphash.Seed
	shards [indexShards]shard
}

type shard struct {
	mu     sync.RWMutex
	byName map[string][]state.Registration // by AOR, and by endpoint name where it differs
}

func newTable(sizeHint int) *table {
	t := &table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].byName = make(map[string][]state.Registration, sizeHint/indexShards)
	}
	return t
}

func (t *table) shard(name string) *shard {
	return &t.shards[maphash.String(t.seed, name)%indexShards]
}

// sweepInterval: how often expired registrations are dropped from memory
// (lookups hide them at their exact expiry anyway).
const sweepInterval = 5 * time.Second

func newIndex(st feedStore, now func() time.Time, ttl, reload time.Duration, log *slog.Logger) *index {
	x := &index{st: st, now: now, ttl: ttl, reload: reload, log: log}
	x.alive.Store(&map[string]time.Time{})
	return x
}

// locate returns the live registrations named name (AOR or endpoint).
func (x *index) locate(ctx context.Context, name string) ([]state.Registration, error) {
	t := x.tab.Load()
	now := x.now()
	if t == nil || now.UnixNano()-x.heard.Load() > int64(x.ttl) {
		return x.st.LookupAOR(ctx, name)
	}
	alive := *x.alive.Load()
	sh := t.shard(name)
	sh.mu.RLock()
	regs := sh.byName[name]
	var live []state.Registration
	for _, r := range regs {
		if r.Expires.After(now) && alive[r.Server].After(now) {
			if live == nil {
				live = make([]state.Registration, 0, len(regs))
			}
			live = append(live, r)
		}
	}
	sh.mu.RUnlock()
	return live, nil
}

// run watches the feed and keeps the index current until ctx ends.
func (x *index) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := x.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute { // it worked for a while: a new outage
			backoff = 100 * time.Millisecond
		}
		if backoff == 100*time.Millisecond { // once per outage at Warn
			x.log.Warn("finder: index feed ended; lookups go to the store until it is back", "err", err)
		} else {
			x.log.Debug("finder: index feed still down", "err", err)
		}
		x.tab.Store(nil)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow subscribes, loads everything, then applies the feed until it
// breaks or ctx ends.
func (x *index) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := x.st.WatchRegistrations(wctx)
	if err != nil {
		return err
	}
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	var reload <-chan time.Time
	if x.reload > 0 {
		t := time.NewTicker(x.reload)
		defer t.Stop()
		reload = t.C
	}
	needLoad := true
	for {
		if needLoad {
			// Retry until the store answers; the feed meanwhile waits (Redis
			// buffers it, or drops us, which ends in another Resync).
			if err := x.load(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				x.tab.Store(nil) // events were lost: the store answers until a load works
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
				continue
			}
			needLoad = false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-events:
			if !ok {
				return errFeedClosed
			}
			needLoad = x.apply(e)
		case <-sweep.C:
			x.sweep()
		case <-reload:
			needLoad = true
		}
	}
}

var errFeedClosed = errors.New("registration feed closed")

// load reads the whole store into a new table and swaps it in.
func (x *index) load(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, max(x.ttl, 30*time.Second))
	defer cancel()
	before, err := x.st.Servers(lctx)
	if err == nil {
		var all []state.Registration
		all, err = x.st.AllRegistrations(lctx)
		if err == nil {
			var after map[string]time.Time
			after, err = x.st.Servers(lctx)
			if err == nil {
				x.install(all, before, after)
				if x.failing {
					x.log.Info("finder: index loaded again", "registrations", len(all))
					x.failing = false
				}
				if x.onReload != nil {
					x.onReload(nil)
				}
				return nil
			}
		}
	}
	if x.onReload != nil {
		x.onReload(err)
	}
	if ctx.Err() == nil {
		// Once per outage at Warn: the load is retried every second.
		lvl := slog.LevelWarn
		if x.failing {
			lvl = slog.LevelDebug
		}
		x.log.Log(ctx, lvl, "finder: index load failed; lookups go to the store", "err", err)
		x.failing = true
	}
	return err
}

// install builds the table from a full reading. A server is complete when
// it was alive before and after AllRegistrations (which leaves out dead
// servers); its heartbeat ends a heartbeat_ttl after its last beat until a
// ServerAlive says exactly when.
func (x *index) install(all []state.Registration, before, after map[string]time.Time) {
	t := newTable(2 * len(all))
	for _, r := range all {
		addTo(t, r)
	}
	alive := make(map[string]time.Time, len(after))
	x.complete = make(map[string]bool, len(after))
	for srv, last := range after {
		alive[srv] = last.Add(x.ttl)
		if _, ok := before[srv]; ok {
			x.complete[srv] = true
		}
	}
	x.alive.Store(&alive)
	x.size.Store(int64(len(all)))
	x.heard.Store(x.now().UnixNano())
	x.tab.Store(t)
}

// apply applies one feed event and reports whether a full load is needed.
func (x *index) apply(e state.RegistrationEvent) bool {
	x.heard.Store(x.now().UnixNano())
	t := x.tab.Load()
	r := e.Registration
	switch e.Kind {
	case state.Resync:
		return true
	case state.Added:
		if r.Server == "" || r.AOR == "" {
			return false
		}
		// removeFrom takes the old version from every name it had (its
		// endpoint name may have changed).
		if _, ok := removeFrom(t, r.Server, r.AOR, r.Contact); !ok {
			x.size.Add(1)
		}
		addTo(t, r)
	case state.Removed:
		if _, ok := removeFrom(t, r.Server, r.AOR, r.Contact); ok {
			x.size.Add(-1)
		}
	case state.ServerAlive, state.ServerDown:
		until := r.Expires
		if e.Kind == state.ServerDown {
			until = time.Time{}
		}
		old := *x.alive.Load()
		alive := make(map[string]time.Time, len(old)+1)
		for k, v := range old {
			alive[k] = v
		}
		alive[r.Server] = until
		x.alive.Store(&alive)
		// A server that was dead at the last load has registrations the
		// index never read: read everything again.
		return e.Kind == state.ServerAlive && !x.complete[r.Server]
	}
	return false
}

// addTo indexes r under its AOR and, if different, its endpoint name.
// Slices are copied, never changed in place: lookups read them unlocked
// after taking a copy of the header under the shard's read lock.
func addTo(t *table, r state.Registration) {
	for _, name := range names(r) {
		sh := t.shard(name)
		sh.mu.Lock()
		sh.byName[name] = append(slices.Clip(sh.byName[name]), r)
		sh.mu.Unlock()
	}
}

// removeFrom drops the registration server/aor/contact from every name it
// is indexed under and returns it; ok is false if the index did not hold it.
func removeFrom(t *table, server, aor, contact string) (old state.Registration, ok bool) {
	same := func(r state.Registration) bool { return r.Server == server && r.AOR == aor && r.Contact == contact }
	drop := func(name string) (state.Registration, bool) {
		sh := t.shard(name)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		regs := sh.byName[name]
		i := slices.IndexFunc(regs, same)
		if i < 0 {
			return state.Registration{}, false
		}
		old := regs[i]
		if rest := slices.Delete(slices.Clone(regs), i, i+1); len(rest) > 0 {
			sh.byName[name] = rest
		} else {
			delete(sh.byName, name)
		}
		return old, true
	}
	if old, ok = drop(aor); ok && old.Endpoint != "" && old.Endpoint != aor {
		drop(old.Endpoint)
	}
	return old, ok
}

func names(r state.Registration) []string {
	if r.Endpoint != "" && r.Endpoint != r.AOR {
		return []string{r.AOR, r.Endpoint}
	}
	return []string{r.AOR}
}

// sweep drops expired registrations from memory, one shard at a time.
func (x *index) sweep() {
	t := x.tab.Load()
	if t == nil {
		return
	}
	now := x.now()
	expired := func(r state.Registration) bool { return !r.Expires.After(now) }
	var gone int64
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for name, regs := range sh.byName {
			if !slices.ContainsFunc(regs, expired) {
				continue
			}
			for _, r := range regs {
				if expired(r) && r.AOR == name {
					gone++
				}
			}
			if regs = slices.DeleteFunc(slices.Clone(regs), expired); len(regs) > 0 {
				sh.byName[name] = regs
			} else {
				delete(sh.byName, name)
			}
		}
		sh.mu.Unlock()
	}
	x.size.Add(-gone)
}
