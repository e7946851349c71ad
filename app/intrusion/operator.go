package intrusion

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// BanInfo is one ban as operators see it.
type BanInfo struct {
	state.Ban
	// TimeLeft is zero for permanent bans.
	TimeLeft time.Duration `json:"time_left"`
	// Pending: decided on this server, not yet in the store (store down).
	Pending bool `json:"pending,omitempty"`
}

// ErrQueued is wrapped by Ban and Unban when the change is in force on this
// server but the store could not take it yet; it is retried until it can.
var ErrQueued = errors.New("intrusion: applied on this server, queued for the cluster")

// Ban bans p cluster-wide for d; d == 0 bans permanently. A prefix that
// covers a never-ban network is refused.
func (m *Monitor) Ban(ctx context.Context, p netip.Prefix, d time.Duration, reason string) error {
	p, ok := normalize(p)
	if !ok {
		return errors.New("intrusion: ban: invalid prefix")
	}
	if d < 0 {
		return fmt.Errorf("intrusion: ban %s: negative duration %s", p, d)
	}
	if m.overlapsNeverBan(p) {
		return fmt.Errorf("intrusion: ban %s: covers a never-ban network", p)
	}
	if reason == "" {
		reason = "operator"
	}
	now := m.clock.Now()
	b := state.Ban{Prefix: p, Permanent: d == 0, Reason: reason, Server: m.server, Created: now}
	if d > 0 {
		b.Expires = now.Add(d)
	}
	m.mu.Lock()
	if r := m.records[p]; r != nil {
		b.Strikes = r.strikes
	}
	m.setBanLocked(b, false, time.Time{})
	m.updateActiveLocked()
	m.mu.Unlock()
	m.met.bans.WithLabelValues(kind(b.Permanent), "operator").Inc()
	m.log.Info("operator ban", "prefix", p, "permanent", b.Permanent, "expires", b.Expires, "reason", reason)
	return m.wait(ctx, "ban", p, func(done chan error) { m.writer.put(b, done) })
}

// Unban lifts the ban of p cluster-wide and resets its strike and
// escalation counters. For a single address, the ban of its configured
// prefix (e.g. its /64) is lifted too.
func (m *Monitor) Unban(ctx context.Context, p netip.Prefix) error {
	p, ok := normalize(p)
	if !ok {
		return errors.New("intrusion: unban: invalid prefix")
	}
	targets := []netip.Prefix{p}
	if p.IsSingleIP() {
		if wide := m.banPrefix(p.Addr()); wide != p {
			targets = append(targets, wide)
		}
	}
	m.mu.Lock()
	for _, t := range targets {
		if m.removeBanLocked(t) {
			m.met.unbans.Inc()
		}
		delete(m.records, t)
	}
	m.updateActiveLocked()
	m.mu.Unlock()
	m.log.Info("operator unban", "prefix", p)
	var errs []error
	for _, t := range targets {
		errs = append(errs, m.wait(ctx, "unban", t, func(done chan error) { m.writer.remove(t, done) }))
	}
	return errors.Join(errs...)
}

// wait queues a store write and waits for its first attempt. Before Run
// has started there is no writer yet; the write is then left queued.
func (m *Monitor) wait(ctx context.Context, what string, p netip.Prefix, queue func(chan error)) error {
	done := make(chan error, 1)
	queue(done)
	if !m.running.Load() {
		return fmt.Errorf("%w: %s %s: monitor not running", ErrQueued, what, p)
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrQueued, what, p, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %s %s: %w", ErrQueued, what, p, ctx.Err())
	}
}

// List returns every ban of the cluster with its time left, plus this
// server's decisions the store does not have yet. If the store cannot be
// read, it returns this server's bans and the error.
func (m *Monitor) List(ctx context.Context) ([]BanInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	list, err := m.store.ListBans(ctx)
	now := m.clock.Now()
	info := func(b state.Ban, pending bool) BanInfo {
		bi := BanInfo{Ban: b, Pending: pending}
		if !b.Permanent {
			bi.TimeLeft = max(b.Expires.Sub(now), 0)
		}
		return bi
	}
	var out []BanInfo
	seen := make(map[netip.Prefix]bool, len(list))
	for _, b := range list {
		if !b.Permanent && !b.Expires.After(now) {
			continue
		}
		seen[b.Prefix] = true
		out = append(out, info(b, false))
	}
	m.mu.Lock()
	for p, lb := range m.bans {
		if seen[p] || !lb.ban.Permanent && !lb.ban.Expires.After(now) {
			continue
		}
		if err != nil || !lb.confirmed {
			out = append(out, info(lb.ban, !lb.confirmed))
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	if err != nil {
		return out, fmt.Errorf("intrusion: list: store unavailable, showing this server's bans: %w", err)
	}
	return out, nil
}
