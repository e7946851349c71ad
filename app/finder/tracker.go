package finder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
)

// TrackerStore is what the tracker writes: registrations and heartbeats.
type TrackerStore interface {
	state.Registrations
	state.Cluster
}

// TrackerDeps are the tracker's collaborators.
type TrackerDeps struct {
	AMI        ami.Conn
	Store      TrackerStore
	Log        *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // nil: time.Now
}

// Tracker mirrors the local Asterisk's PJSIP contacts into the shared store
// and keeps this server alive there (heartbeat) while its Asterisk answers.
type Tracker struct {
	cfg  Config
	deps TrackerDeps
	log  *slog.Logger
	m    *trackerMetrics

	// Owned by the Run goroutine.
	known  map[contactKey]state.Registration
	stored map[contactKey]state.Registration // what our writes left in the store; nil: unknown
	dirty  bool                              // a store write failed: replace everything at the next beat
	down   time.Time                         // when Asterisk stopped answering AMI Ping; zero while it answers
	gone   bool                              // registrations withdrawn after a long AMI outage

	ready atomic.Bool
}

// subscriptionBuffer holds AMI events while a resync runs; events lost past
// it are repaired by the next resync.
const subscriptionBuffer = 4096

// resyncRetry is the delay before a failed resync is retried.
const resyncRetry = 5 * time.Second

// NewTracker checks cfg and deps and builds a tracker; Run starts it.
func NewTracker(cfg Config, deps TrackerDeps) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.AMI == nil || deps.Store == nil {
		return nil, errors.New("finder: tracker needs an AMI connection and a store")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m, err := newTrackerMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, deps: deps, log: deps.Log, m: m,
		known: map[contactKey]state.Registration{}}, nil
}

// Ready reports nil once the first full resync has reached the store.
func (t *Tracker) Ready() error {
	if !t.ready.Load() {
		return errors.New("finder: contacts not yet synchronised")
	}
	return nil
}

// Run follows AMI until ctx ends: a full resync at start, after every AMI
// (re)login and every ResyncInterval; ContactStatus events in between; a
// heartbeat every HeartbeatTTL/3 while Asterisk answers a Ping.
func (t *Tracker) Run(ctx context.Context) error {
	events, cancel := t.deps.AMI.Subscribe(subscriptionBuffer)
	defer cancel()

	resync := time.NewTimer(0) // the first resync runs at once
	defer resync.Stop()
	periodic := time.NewTicker(t.cfg.ResyncInterval)
	defer periodic.Stop()
	beat := time.NewTicker(t.cfg.HeartbeatTTL / 3)
	defer beat.Stop()
	resyncArmed := true
	arm := func(d time.Duration) {
		if resyncArmed {
			return // one pending resync covers every reason
		}
		resync.Reset(d)
		resyncArmed = true
	}
	t.heartbeat(ctx) // the first resync is armed already
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("finder: AMI event subscription closed")
			}
			switch ev.Event() {
			case ami.EventConnected:
				resync.Stop()
				resyncArmed = false
				arm(0)
			case "ContactStatus":
				if t.handleContactStatus(ctx, &ev) && t.cfg.EventResyncDelay > 0 {
					arm(t.cfg.EventResyncDelay)
				}
			}
		case <-resync.C:
			resyncArmed = false
			if err := t.resync(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				t.log.Warn("finder: resync failed, retrying", "err", err, "retry_in", resyncRetry)
				arm(resyncRetry)
			}
		case <-periodic.C:
			arm(0)
		case <-beat.C:
			if t.heartbeat(ctx) {
				arm(0)
			}
		}
	}
}

// handleContactStatus applies one ContactStatus event and reports whether a
// resync should follow to learn the new contact's expiry and user agent.
func (t *Tracker) handleContactStatus(ctx context.Context, m *ami.Message) bool {
	c, ok := parseContactStatus(m)
	if ok && (state.Registration{Server: t.cfg.Server, AOR: c.key.aor, Contact: c.key.uri, Expires: time.Unix(1, 0)}).Validate() != nil {
		ok = false
	}
	if !ok {
		t.m.events.WithLabelValues("malformed").Inc()
		return false
	}
	t.m.events.WithLabelValues(statusLabel(c.status)).Inc()
	if c.status == "Removed" {
		delete(t.known, c.key)
		t.m.local.Set(float64(len(t.known)))
		if t.write(ctx, "delete", func(ctx context.Context) error {
			return t.deps.Store.DeleteRegistration(ctx, t.cfg.Server, c.key.aor, c.key.uri)
		}) && t.stored != nil {
			delete(t.stored, c.key)
		}
		return false
	}
	if _, ok := t.known[c.key]; ok {
		return c.status == "Updated" // qualify changes need no write
	}
	now := t.deps.Now()
	r := state.Registration{
		Server: t.cfg.Server, ServerAddr: t.cfg.SIPAddr,
		Endpoint: c.endpoint, AOR: c.key.aor, Contact: c.key.uri,
		Expires: t.provisionalExpiry(now), Updated: now,
	}
	t.known[c.key] = r
	t.m.local.Set(float64(len(t.known)))
	if t.write(ctx, "put", func(ctx context.Context) error { return t.deps.Store.PutRegistration(ctx, r) }) && t.stored != nil {
		t.stored[c.key] = r
	}
	return true
}

// statusLabel bounds the metric label to known values.
func statusLabel(s string) string {
	switch s {
	case "NonQualified", "Reachable", "Unreachable", "Created", "Updated", "Removed", "Unknown":
		return s
	}
	return "other"
}

// resync reads every contact from Asterisk and makes them the whole truth
// for this server in the store.
func (t *Tracker) resync(ctx context.Context) error {
	start := t.deps.Now()
	list, err := t.showContacts(ctx)
	if err != nil {
		t.m.resyncs.WithLabelValues("ami_error").Inc()
		return err
	}
	now := t.deps.Now()
	known := make(map[contactKey]state.Registration, len(list))
	counts := map[contactListResult]int{}
	for i := range list {
		if list[i].Event() != "ContactList" {
			continue
		}
		r, res := t.parseContactList(&list[i], now)
		counts[res]++
		if res != contactKept {
			continue
		}
		k := contactKey{r.AOR, r.Contact}
		if old, ok := t.known[k]; ok {
			r.Updated = old.Updated // Updated is when doorman first saw the contact
		}
		known[k] = r
	}
	t.known = known
	t.m.local.Set(float64(len(known)))
	if n := counts[contactForeign]; n > 0 {
		t.log.Debug("finder: skipped contacts registered on other servers (shared sorcery?)", "count", n)
	}
	if n := counts[contactMalformed]; n > 0 {
		t.log.Warn("finder: skipped malformed ContactList items", "count", n)
	}
	if err := t.sync(ctx); err != nil {
		t.m.resyncs.WithLabelValues("store_error").Inc()
		return err
	}
	t.m.resyncs.WithLabelValues("ok").Inc()
	t.m.resyncSeconds.Observe(t.deps.Now().Sub(start).Seconds())
	t.ready.Store(true)
	t.log.Debug("finder: resynchronised contacts", "contacts", len(known))
	return nil
}

// showContacts runs PJSIPShowContacts. With no contacts Asterisk answers
// "Response: Error / Message: No Contacts found", which is an empty list.
func (t *Tracker) showContacts(ctx context.Context) ([]ami.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, list, err := t.deps.AMI.Action(ctx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "PJSIPShowContacts"}}})
	noContacts := strings.Contains(resp.Get("Message"), "No Contacts found") ||
		(err != nil && strings.Contains(err.Error(), "No Contacts found"))
	switch {
	case noContacts:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("finder: PJSIPShowContacts: %w", err)
	case strings.EqualFold(resp.Get("Response"), "Error"):
		return nil, fmt.Errorf("finder: PJSIPShowContacts: %s", resp.Get("Message"))
	}
	return list, nil
}

// sync brings the store in line with t.known. Right after start, or after
// a failed write, the store's content is unknown: one ReplaceRegistrations.
// Otherwise only the difference is written: new, removed and changed
// contacts, and refreshed expiries only once the stored one comes within two
// resync intervals, so a server with thousands of phones does not rewrite
// them all every resync.
func (t *Tracker) sync(ctx context.Context) error {
	if t.dirty || t.stored == nil {
		return t.pushAll(ctx)
	}
	now := t.deps.Now()
	for k := range t.stored {
		if _, ok := t.known[k]; ok {
			continue
		}
		if !t.write(ctx, "delete", func(ctx context.Context) error {
			return t.deps.Store.DeleteRegistration(ctx, t.cfg.Server, k.aor, k.uri)
		}) {
			return errors.New("finder: store write failed during resync")
		}
		delete(t.stored, k)
	}
	for k, r := range t.known {
		if old, ok := t.stored[k]; ok && !t.needsWrite(old, r, now) {
			continue
		}
		if !t.write(ctx, "put", func(ctx context.Context) error { return t.deps.Store.PutRegistration(ctx, r) }) {
			return errors.New("finder: store write failed during resync")
		}
		t.stored[k] = r
	}
	return nil
}

// needsWrite reports whether the stored copy old of r must be rewritten.
func (t *Tracker) needsWrite(old, r state.Registration, now time.Time) bool {
	if old.Endpoint != r.Endpoint || old.UserAgent != r.UserAgent || old.Source != r.Source || old.ServerAddr != r.ServerAddr {
		return true
	}
	return r.Expires.Before(old.Expires) || old.Expires.Sub(now) < 2*t.cfg.ResyncInterval
}

// pushAll makes the local view the whole truth for this server in the store.
func (t *Tracker) pushAll(ctx context.Context) error {
	regs := make([]state.Registration, 0, len(t.known))
	for _, r := range t.known {
		regs = append(regs, r)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.StoreTimeout+time.Duration(len(regs))*time.Millisecond)
	defer cancel()
	if err := t.deps.Store.ReplaceRegistrations(ctx, t.cfg.Server, regs); err != nil {
		t.dirty = true
		t.m.storeErrors.Inc()
		return fmt.Errorf("finder: replace registrations: %w", err)
	}
	t.dirty = false
	t.stored = maps.Clone(t.known)
	return nil
}

// write runs one store write with a timeout; a failure marks the view dirty
// so the next heartbeat replaces everything.
func (t *Tracker) write(ctx context.Context, op string, f func(context.Context) error) bool {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.StoreTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		t.dirty = true
		t.m.storeErrors.Inc()
		t.log.Warn("finder: store write failed; will push all contacts again", "op", op, "err", err)
		return false
	}
	return true
}

// withdrawIfLongDown removes this server's registrations once Asterisk has
// not answered for HeartbeatTTL. Another job (Busy Lamp Monitor) may keep
// the server's heartbeat alive while only Asterisk is gone; its phones must
// still stop being locations in bounded time.
func (t *Tracker) withdrawIfLongDown(ctx context.Context) {
	now := t.deps.Now()
	if t.down.IsZero() {
		t.down = now
		return
	}
	if t.gone || now.Sub(t.down) < t.cfg.HeartbeatTTL {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, t.cfg.StoreTimeout)
	defer cancel()
	if err := t.deps.Store.ReplaceRegistrations(sctx, t.cfg.Server, nil); err != nil {
		t.m.storeErrors.Inc()
		t.log.Warn("finder: could not withdraw registrations of unreachable Asterisk", "err", err)
		return
	}
	t.gone = true
	t.stored = nil // the next resync replaces everything
	t.log.Warn("finder: Asterisk unreachable; its registrations are withdrawn until it answers again",
		"down_for", now.Sub(t.down).Truncate(time.Second))
}

// heartbeat marks this server alive while its Asterisk answers AMI: a server
// whose Asterisk (or agent) is gone stops being a location after HeartbeatTTL.
// It reports whether a resync should run now (Asterisk answers again after
// its registrations were withdrawn).
func (t *Tracker) heartbeat(ctx context.Context) (resync bool) {
	pctx, cancel := context.WithTimeout(ctx, t.cfg.HeartbeatTTL/3)
	defer cancel()
	resp, _, err := t.deps.AMI.Action(pctx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "Ping"}}})
	if err == nil && strings.EqualFold(resp.Get("Response"), "Error") {
		err = fmt.Errorf("%s", resp.Get("Message"))
	}
	if err != nil {
		t.m.heartbeats.WithLabelValues("ami_down").Inc()
		t.log.Debug("finder: no heartbeat, Asterisk does not answer", "err", err)
		t.withdrawIfLongDown(ctx)
		return false
	}
	t.down = time.Time{}
	if t.gone {
		// Asterisk is back: a resync puts its contacts back.
		t.gone = false
		resync = true
	}
	sctx, cancel2 := context.WithTimeout(ctx, t.cfg.StoreTimeout)
	defer cancel2()
	if err := t.deps.Store.Heartbeat(sctx, t.cfg.Server, t.cfg.HeartbeatTTL); err != nil {
		t.m.heartbeats.WithLabelValues("store_error").Inc()
		t.log.Warn("finder: heartbeat failed", "err", err)
		return resync
	}
	t.m.heartbeats.WithLabelValues("ok").Inc()
	if t.dirty && t.ready.Load() {
		if err := t.pushAll(ctx); err != nil {
			t.log.Warn("finder: store still failing", "err", err)
		}
	}
	return resync
}
