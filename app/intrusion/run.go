package intrusion

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
)

// Run initialises the firewall, restores the store's bans into it in one
// batch, then applies the ban feed, checks and repairs the firewall, and
// writes decisions to the store, until ctx ends. It returns an error only
// if the firewall cannot be initialised at start.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("intrusion: Run called twice")
	}
	defer m.running.Store(false)
	defer m.ready.Store(false)
	if err := m.fw.Init(ctx); err != nil {
		return fmt.Errorf("intrusion: firewall init: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { m.fwq.run(ctx) })
	wg.Go(func() { m.writer.run(ctx) })
	wg.Go(func() { m.counters.run(ctx) })
	wg.Go(func() { m.watch(ctx) })
	m.maintain(ctx)
	wg.Wait()
	return nil
}

// watch follows the store's ban feed, re-subscribing after failures; every
// (re)subscription and every Resync is followed by a full reconcile, so
// nothing published while the feed was down is missed.
func (m *Monitor) watch(ctx context.Context) {
	delay := retryMin
	first := true
	for ctx.Err() == nil {
		ch, err := m.store.WatchBans(ctx)
		if err != nil {
			m.ready.Store(false)
			m.met.storeErrors.WithLabelValues("watch").Inc()
			m.log.Warn("cannot watch the ban feed; retrying", "err", err, "in", delay)
			if first {
				m.reconcile(ctx) // restore what we can now
				first = false
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, retryMax)
			continue
		}
		first, delay = false, retryMin
		m.reconcile(ctx)
		m.ready.Store(true)
		m.writer.kick()
		m.follow(ctx, ch)
		m.ready.Store(false)
	}
}

// Ready reports whether the monitor follows the store's ban feed and has
// reconciled the firewall with it (for the health endpoint). Bans are
// enforced locally also when it is not ready.
func (m *Monitor) Ready() bool { return m.ready.Load() }

// follow applies the feed until it closes. Periodic resyncs run here too,
// so a listing never interleaves with feed events (a removal applied
// between a listing and its merge would otherwise be undone).
func (m *Monitor) follow(ctx context.Context, ch <-chan state.BanEvent) {
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			switch ev.Kind {
			case state.Added:
				m.applyFeedBan(ev.Ban)
			case state.Removed:
				m.applyFeedRemoval(ev.Ban.Prefix)
			case state.Resync:
				m.reconcile(ctx)
				m.writer.kick() // the store is back: write what waited
			}
		case <-m.resync:
			m.reconcile(ctx)
		}
	}
}

// applyFeedBan enforces a ban published by any agent, unless it would ban
// a network this server trusts: Redis can make every server drop any
// address, so each agent re-checks its own never-ban list.
func (m *Monitor) applyFeedBan(b state.Ban) {
	p, ok := normalize(b.Prefix)
	if !ok {
		m.met.skipped.WithLabelValues(skipBadBan).Inc()
		return
	}
	b.Prefix = p
	if m.overlapsNeverBan(p) {
		m.met.skipped.WithLabelValues(skipRemoteTrust).Inc()
		m.log.Warn("refusing a ban on a trusted network", "prefix", p, "server", b.Server, "reason", b.Reason)
		return
	}
	now := m.clock.Now()
	if !b.Permanent && !b.Expires.After(now) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.bans[p]; cur != nil {
		if sameBan(cur.ban, b) {
			if !cur.confirmed { // our own decision coming back
				m.seq++
				cur.seq, cur.confirmed = m.seq, true
			}
			return
		}
		if outlasts(cur.ban, b) {
			// Longest ban wins: a temporary ban racing a permanent one
			// (decided on two servers at once) must not shorten it.
			if cur.ban.Permanent {
				m.writer.put(cur.ban, nil)
			}
			return
		}
	}
	m.setBanLocked(b, true, time.Time{})
	if r := m.records[p]; r != nil {
		r.strikes = max(r.strikes, b.Strikes)
	}
	m.met.bans.WithLabelValues(kind(b.Permanent), "remote").Inc()
	if m.feedLog.allow(m.log, m.clock.Now()) {
		m.log.Info("ban from the cluster", "prefix", p, "permanent", b.Permanent, "expires", b.Expires, "server", b.Server, "reason", b.Reason)
	}
}

// outlasts reports whether a ends after b.
func outlasts(a, b state.Ban) bool {
	if a.Permanent || b.Permanent {
		return a.Permanent && !b.Permanent
	}
	return a.Expires.After(b.Expires)
}

// applyFeedRemoval lifts a ban removed by any agent. An explicit unban
// (not an expiry) also forgets the local counters, as the store's are reset.
func (m *Monitor) applyFeedRemoval(p netip.Prefix) {
	p, ok := normalize(p)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.bans[p]
	if cur == nil {
		return
	}
	now := m.clock.Now()
	if !cur.ban.Permanent && !cur.ban.Expires.After(now.Add(time.Second)) {
		m.removeBanLocked(p) // expired: counters stay
		return
	}
	m.removeBanLocked(p)
	delete(m.records, p)
	m.met.unbans.Inc()
	m.log.Info("unban from the cluster", "prefix", p)
}

// reconcile makes the kernel set equal to the store's bans plus local
// decisions the store does not have yet. If the store is unreachable it
// keeps (and adopts) what the kernel holds and deletes nothing.
func (m *Monitor) reconcile(ctx context.Context) {
	m.mu.Lock()
	seq0 := m.seq
	m.mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	list, lerr := m.store.ListBans(lctx)
	cancel()
	if lerr != nil {
		m.met.storeErrors.WithLabelValues("list").Inc()
		m.log.Warn("cannot read bans from the store; keeping local bans", "err", lerr)
	}
	var kernel []firewall.Entry
	kerr := m.fwq.do(ctx, func(ctx context.Context, fw firewall.Firewall) error {
		var err error
		kernel, err = fw.List(ctx)
		return err
	})
	if kerr != nil {
		m.log.Warn("cannot list the firewall set", "err", kerr)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if lerr == nil {
		inStore := make(map[netip.Prefix]state.Ban, len(list))
		for _, b := range list {
			p, ok := normalize(b.Prefix)
			switch {
			case !ok:
				m.met.skipped.WithLabelValues(skipBadBan).Inc()
				continue
			case m.overlapsNeverBan(p):
				m.met.skipped.WithLabelValues(skipRemoteTrust).Inc()
				continue
			case !b.Permanent && !b.Expires.After(now):
				continue
			}
			b.Prefix = p
			inStore[p] = b
		}
		for p, lb := range m.bans {
			if _, ok := inStore[p]; !ok && lb.confirmed && lb.seq <= seq0 {
				m.seq++
				delete(m.bans, p) // removed from the store while we were not looking
				m.fwq.del(p)
			}
		}
		for p, b := range inStore {
			cur := m.bans[p]
			switch {
			case cur != nil && (cur.seq > seq0 || sameBan(cur.ban, b)):
				cur.confirmed = cur.confirmed || sameBan(cur.ban, b)
			case cur != nil && !cur.confirmed && outlasts(cur.ban, b):
				// ours is newer and still on its way to the store
			default:
				m.seq++
				m.bans[p] = &localBan{ban: b, seq: m.seq, confirmed: true}
			}
		}
	} else if kerr == nil {
		for _, e := range kernel {
			p, ok := normalize(e.Prefix)
			if !ok || m.bans[p] != nil || m.overlapsNeverBan(p) {
				continue
			}
			b := state.Ban{Prefix: p, Permanent: e.Permanent(), Reason: "restored from the firewall", Server: m.server, Created: now}
			if !b.Permanent {
				b.Expires = now.Add(e.Timeout)
			}
			m.seq++
			m.bans[p] = &localBan{ban: b, seq: m.seq, confirmed: true}
		}
	}
	have := make(map[netip.Prefix]firewall.Entry, len(kernel))
	for _, e := range kernel {
		have[e.Prefix] = e
	}
	for p, lb := range m.bans {
		if !lb.ban.Permanent && !lb.ban.Expires.After(now) {
			delete(m.bans, p)
			continue
		}
		e, ok := have[p]
		if kerr == nil && ok && e.Permanent() == lb.ban.Permanent &&
			(lb.ban.Permanent || e.Timeout >= lb.ban.Expires.Sub(now)-2*time.Second) {
			continue
		}
		m.fwq.add(p, lb.ban.Expires, time.Time{})
	}
	if lerr == nil && kerr == nil {
		for _, e := range kernel {
			if _, ok := m.bans[e.Prefix]; !ok {
				m.fwq.del(e.Prefix)
			}
		}
	}
	m.updateActiveLocked()
}

// maintain checks the firewall every ReconcileInterval (repairing it when
// its table or sets are gone), reconciles fully every ResyncInterval, and
// serves repair requests from failed firewall writes.
func (m *Monitor) maintain(ctx context.Context) {
	check := time.NewTicker(m.cfg.ReconcileInterval)
	defer check.Stop()
	resync := time.NewTicker(m.cfg.ResyncInterval)
	defer resync.Stop()
	var lastRepair time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			m.check(ctx, false)
			m.sweep()
		case <-resync.C:
			select {
			case m.resync <- struct{}{}: // to the feed goroutine
			default:
			}
		case <-m.repair:
			// Failed writes can come in bursts; repair at most every 100 ms.
			if wait := 100*time.Millisecond - time.Since(lastRepair); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			m.check(ctx, true)
			lastRepair = time.Now()
		}
	}
}

// check runs the firewall's Check; if doorman's table or sets are missing,
// or force is set after a failed write, it re-creates them and re-adds
// every ban this server enforces.
func (m *Monitor) check(ctx context.Context, force bool) {
	err := m.fwq.do(ctx, func(ctx context.Context, fw firewall.Firewall) error { return fw.Check(ctx) })
	missing := errors.Is(err, firewall.ErrMissing)
	if err != nil && !missing {
		if ctx.Err() == nil {
			m.met.fwErrors.Inc()
			m.log.Warn("firewall check failed", "err", err)
		}
		return
	}
	if !missing && !force {
		return
	}
	if missing {
		m.met.repairs.Inc()
		m.log.Warn("firewall table or set missing; restoring it and every ban", "err", err)
	}
	if err := m.fwq.do(ctx, func(ctx context.Context, fw firewall.Firewall) error { return fw.Init(ctx) }); err != nil {
		if ctx.Err() == nil {
			m.met.fwErrors.Inc()
			m.log.Error("firewall init failed", "err", err)
		}
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	for p, lb := range m.bans {
		if lb.ban.Permanent || lb.ban.Expires.After(now) {
			m.fwq.add(p, lb.ban.Expires, time.Time{})
		}
	}
}

// sweep forgets expired bans and counters.
func (m *Monitor) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	for p, lb := range m.bans {
		if !lb.ban.Permanent && !lb.ban.Expires.After(now) {
			delete(m.bans, p)
		}
	}
	for p, r := range m.records {
		if !now.Before(r.strikesExp) && !now.Before(r.escalExp) {
			delete(m.records, p)
		}
	}
	m.updateActiveLocked()
}

func (m *Monitor) updateActiveLocked() {
	var perm, temp int
	for _, lb := range m.bans {
		if lb.ban.Permanent {
			perm++
		} else {
			temp++
		}
	}
	m.met.active.WithLabelValues("permanent").Set(float64(perm))
	m.met.active.WithLabelValues("temporary").Set(float64(temp))
}

// normalize returns p masked, with IPv4-mapped IPv6 as IPv4.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}
