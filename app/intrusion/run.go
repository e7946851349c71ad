package intrusion

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
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
				f0 := m.fwq.failures()
				m.reconcile(ctx) // restore what we can now
				m.fwq.markRestored(f0)
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
		f0 := m.fwq.failures()
		m.reconcile(ctx)
		m.fwq.markRestored(f0)
		m.ready.Store(true)
		m.writer.kick()
		m.follow(ctx, ch)
		m.ready.Store(false)
	}
}

// Ready reports whether the monitor follows the store's ban feed and the
// kernel holds what it restored from the store (for the health endpoint):
// after a start with 100,000 bans, not before the last of them is in the
// kernel set. A failed firewall write makes it unready until the repair
// that follows has succeeded. Bans are enforced locally also when it is
// not ready.
func (m *Monitor) Ready() bool { return m.ready.Load() && m.fwq.healthy() }

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
				f0 := m.fwq.failures()
				m.reconcile(ctx)
				m.fwq.markRestored(f0)
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
//
// The store's bans arrive a page at a time (state.BanScanner) and each
// page goes to the kernel as one batch while the next is read, so a
// restore of 100,000 bans at start overlaps reading Redis with writing the
// kernel and holds no second copy of the listing. The kernel is read
// first, so bans it already holds are not written again.
func (m *Monitor) reconcile(ctx context.Context) {
	start := time.Now()
	m.mu.Lock()
	seq0 := m.seq
	m.listGen++
	gen := m.listGen
	m.mu.Unlock()
	var kernel []firewall.Entry
	kerr := m.fwq.do(ctx, func(ctx context.Context, fw firewall.Firewall) error {
		var err error
		kernel, err = fw.List(ctx)
		return err
	})
	if kerr != nil {
		m.log.Warn("cannot list the firewall set", "err", kerr)
	}
	var have map[netip.Prefix]firewall.Entry
	if kerr == nil && len(kernel) > 0 {
		have = make(map[netip.Prefix]firewall.Entry, len(kernel))
		for _, e := range kernel {
			have[e.Prefix] = e
		}
	}
	listed, written := 0, 0
	lerr := m.scanBans(ctx, func(page []state.Ban) error {
		adds := m.mergePage(page, seq0, gen, have, kerr == nil)
		listed += len(page)
		written += len(adds)
		m.fwq.addBulk(adds)
		return nil
	})
	if lerr != nil {
		m.met.storeErrors.WithLabelValues("list").Inc()
		m.log.Warn("cannot read bans from the store; keeping local bans", "err", lerr)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if lerr != nil && kerr == nil {
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
	var adds []bulkEntry
	var perm, temp int // what stays, for the gauge (one pass over 100,000 bans, not two)
	for p, lb := range m.bans {
		switch {
		case !lb.ban.Permanent && !lb.ban.Expires.After(now):
			delete(m.bans, p)
			continue
		case lb.listed == gen:
			// merged from this listing: its page wrote it if needed
		case lerr == nil && lb.confirmed && lb.seq <= seq0:
			m.seq++
			delete(m.bans, p) // removed from the store while we were not looking
			m.fwq.del(p)
			continue
		case !inKernel(have, kerr == nil, lb.ban, now):
			adds = append(adds, bulkEntry{p, lb.ban.Expires})
		}
		if lb.ban.Permanent {
			perm++
		} else {
			temp++
		}
	}
	m.fwq.addBulk(adds)
	written += len(adds)
	if lerr == nil && kerr == nil {
		for _, e := range kernel {
			if _, ok := m.bans[e.Prefix]; !ok {
				m.fwq.del(e.Prefix)
			}
		}
	}
	m.setActive(perm, temp)
	if gen == 1 {
		// Logged once the kernel has taken everything queued (for
		// operators and the restore benchmark's breakdown).
		listedAfter := time.Since(start)
		m.fwq.push(fwOp{kind: fwCall, done: make(chan error, 1), call: func(context.Context, firewall.Firewall) error {
			m.log.Info("bans restored", "from_store", listed, "to_firewall", written, "in_firewall_before", len(kernel),
				"listed_after", listedAfter.Round(time.Millisecond), "in_firewall_after", time.Since(start).Round(time.Millisecond))
			return nil
		}})
	}
}

// scanBans lists the store's bans a page at a time, or in one page when
// the store cannot page. Each page must come within StoreTimeout.
func (m *Monitor) scanBans(ctx context.Context, fn func([]state.Ban) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchdog := time.AfterFunc(m.cfg.StoreTimeout, cancel)
	defer watchdog.Stop()
	if sc, ok := m.store.(state.BanScanner); ok {
		return sc.ScanBans(ctx, func(page []state.Ban) error {
			watchdog.Stop()
			defer watchdog.Reset(m.cfg.StoreTimeout)
			return fn(page)
		})
	}
	list, err := m.store.ListBans(ctx)
	watchdog.Stop()
	if err != nil {
		return err
	}
	return fn(list)
}

// mergePage merges one page of the store's bans into m.bans, marking what
// it holds with gen, and returns those the kernel lacks (have, when
// kernelKnown, is what it held before the listing).
func (m *Monitor) mergePage(page []state.Ban, seq0, gen uint64, have map[netip.Prefix]firewall.Entry, kernelKnown bool) []bulkEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	adds := make([]bulkEntry, 0, len(page))
	for _, b := range page {
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
		cur := m.bans[p]
		switch {
		case cur != nil && (cur.seq > seq0 || sameBan(cur.ban, b)):
			cur.confirmed = cur.confirmed || sameBan(cur.ban, b)
		case cur != nil && !cur.confirmed && outlasts(cur.ban, b):
			// ours is newer and still on its way to the store
		default:
			m.seq++
			cur = &localBan{ban: b, seq: m.seq, confirmed: true}
			m.bans[p] = cur
		}
		cur.listed = gen
		if !inKernel(have, kernelKnown, cur.ban, now) {
			adds = append(adds, bulkEntry{p, cur.ban.Expires})
		}
	}
	return adds
}

// inKernel reports whether the kernel listing have (if known) holds b with
// the right kind and at least its time left.
func inKernel(have map[netip.Prefix]firewall.Entry, known bool, b state.Ban, now time.Time) bool {
	e, ok := have[b.Prefix]
	return known && ok && e.Permanent() == b.Permanent &&
		(b.Permanent || e.Timeout >= b.Expires.Sub(now)-2*time.Second)
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
			m.retryRepair(force)
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
	f0 := m.fwq.failures()
	if err := m.fwq.do(ctx, func(ctx context.Context, fw firewall.Firewall) error { return fw.Init(ctx) }); err != nil {
		if ctx.Err() == nil {
			m.met.fwErrors.Inc()
			m.log.Error("firewall init failed", "err", err)
			m.retryRepair(force || missing)
		}
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	adds := make([]bulkEntry, 0, len(m.bans))
	for p, lb := range m.bans {
		if lb.ban.Permanent || lb.ban.Expires.After(now) {
			adds = append(adds, bulkEntry{p, lb.ban.Expires})
		}
	}
	m.fwq.addBulk(adds)
	m.fwq.markRestored(f0)
}

// retryRepair asks maintain for the repair again (at most every 100 ms)
// when one could not run: a failed write's ban is otherwise missing from
// the kernel, and the monitor unready, until the next resync or feed
// Resync.
func (m *Monitor) retryRepair(repairing bool) {
	if !repairing {
		return
	}
	select {
	case m.repair <- struct{}{}:
	default:
	}
}

// sweepChunk is how many bans or counters sweep looks at per hold of m.mu.
// Handle runs on the AMI reader goroutine and waits for the lock: one walk
// of 100,000 bans held it 10-20 ms, a chunk holds it well under 1 ms.
const sweepChunk = 4096

// sweep forgets expired bans and counters, releasing m.mu between chunks.
// Go lets a map change between steps of a range over it: an entry added
// meanwhile may be skipped (the next sweep sees it), one removed is not
// seen. Each entry is read and handled within one hold of the lock.
func (m *Monitor) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	n := 0
	yield := func() {
		if n++; n%sweepChunk == 0 {
			m.mu.Unlock()
			runtime.Gosched() // let a waiting Handle take the lock
			m.mu.Lock()
		}
	}
	perm := 0
	for p, lb := range m.bans {
		switch {
		case lb.ban.Permanent:
			perm++
		case !lb.ban.Expires.After(now):
			delete(m.bans, p)
		}
		yield()
	}
	for p, r := range m.records {
		if !now.Before(r.strikesExp) && !now.Before(r.escalExp) {
			delete(m.records, p)
		}
		yield()
	}
	// Bans set or removed between chunks may be miscounted (the gauge
	// splits len(m.bans) by perm); the next sweep corrects it.
	perm = min(perm, len(m.bans))
	m.setActive(perm, len(m.bans)-perm)
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
	m.setActive(perm, temp)
}

// setActive sets the active-bans gauge.
func (m *Monitor) setActive(perm, temp int) {
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
