// Package intrusion is doorman's Intrusion Monitor: it turns Asterisk
// security events into kernel firewall bans shared by the whole cluster.
//
// Events are grouped into attempts (SessionID and source within a short
// window), attempts become strikes against the source's prefix (/32, or /64
// for IPv6), and strikes become bans: temporary at first, so a user who
// mistyped can retry, permanent after repeated temporary bans. Trusted
// networks and loopback are never banned, also when a ban arrives from
// another server. A local decision programs the local firewall at once and
// is written to the shared store, which publishes it to every agent; the
// store's feed and periodic checks keep the kernel set equal to the store's
// ban list, and restore it if someone flushes the ruleset. If the store is
// down, bans are enforced locally and written when it is back.
package intrusion

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock tells the time; tests pass a fake.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Deps are the Monitor's collaborators.
type Deps struct {
	Store    state.Bans        // shared strikes and bans (Redis or embedded)
	Firewall firewall.Firewall // this server's kernel set
	Server   string            // this server's name (Asterisk systemname)
	Log      *slog.Logger      // nil: discard
	Metrics  prometheus.Registerer
	Clock    Clock // nil: real time
}

// Monitor is the Intrusion Monitor of one server. Handle is called with
// every security event; Run does the I/O. Its methods are safe for
// concurrent use.
type Monitor struct {
	cfg    Config
	store  state.Bans
	fw     firewall.Firewall
	server string
	log    *slog.Logger
	// banLog and feedLog limit per-ban log lines (under mu).
	banLog, feedLog logLimit
	clock           Clock
	met             *metrics
	triggers        map[string]bool
	services        map[string]bool // upper case; empty: all
	neverBan        []netip.Prefix  // config plus loopback

	mu      sync.Mutex
	groups  *attempts
	records map[netip.Prefix]*record
	bans    map[netip.Prefix]*localBan // what this server enforces
	seq     uint64                     // bumped on every change of bans
	listGen uint64                     // bumped by every reconcile
	batch   bool                       // HandleBatch is deciding (its fresh bans are held)

	fwq      *fwQueue
	writer   *banWriter
	counters *counterWorkers
	repair   chan struct{}
	resync   chan struct{}
	running  atomic.Bool
	ready    atomic.Bool

	// onApplied, if set (tests), sees each ban latency as it is measured.
	onApplied func(time.Duration)
}

// record is what this server knows of a prefix's cluster-wide counters: the
// larger of its own count and the store's last answer.
type record struct {
	strikes    int64
	strikesExp time.Time
	escal      int64 // temporary bans within the escalation window
	escalExp   time.Time
}

// localBan is a ban this server enforces.
type localBan struct {
	ban       state.Ban
	seq       uint64
	confirmed bool   // the store has it (or it came from the store)
	listed    uint64 // listGen of the last reconcile whose listing had it
}

// loopback is never banned, whatever the configuration says.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// New checks cfg and builds a Monitor; call Run to start it.
func New(cfg Config, deps Deps) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("intrusion: a store is required")
	}
	if deps.Firewall == nil {
		return nil, errors.New("intrusion: a firewall is required")
	}
	if deps.Server == "" {
		return nil, errors.New("intrusion: the server name is required")
	}
	m := &Monitor{
		cfg:      cfg,
		banLog:   logLimit{what: "bans"},
		feedLog:  logLimit{what: "bans from the cluster"},
		store:    deps.Store,
		fw:       deps.Firewall,
		server:   deps.Server,
		log:      deps.Log,
		clock:    deps.Clock,
		triggers: make(map[string]bool),
		services: make(map[string]bool),
		groups:   newAttempts(cfg.AttemptWindow, cfg.MaxTracked),
		records:  make(map[netip.Prefix]*record),
		bans:     make(map[netip.Prefix]*localBan),
		repair:   make(chan struct{}, 1),
		resync:   make(chan struct{}, 1),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("job", "intrusion")
	if m.clock == nil {
		m.clock = realClock{}
	}
	for _, t := range cfg.TriggerEvents {
		m.triggers[strings.TrimSpace(t)] = true
	}
	for _, s := range cfg.Services {
		m.services[strings.ToUpper(strings.TrimSpace(s))] = true
	}
	m.neverBan = append(append([]netip.Prefix{}, loopback...), cfg.NeverBan...)
	m.writer = newBanWriter(m)
	// Several workers hide the round trips of one-at-a-time counter
	// updates; with a batching store one worker sends everything queued in
	// one round trip, and more would only split that.
	workers := 4
	if _, ok := deps.Store.(BatchBans); ok {
		workers = 1
	}
	m.counters = newCounterWorkers(m, workers)
	m.fwq = newFWQueue(m)
	met, err := newMetrics(deps.Metrics, func() float64 { return float64(m.writer.pendingLen()) })
	if err != nil {
		return nil, err
	}
	m.met = met
	return m, nil
}

// Handle takes one security event. It never blocks on I/O: decisions are
// made in memory and their effects queued for Run's workers.
func (m *Monitor) Handle(ev ami.SecurityEvent) {
	recv := m.clock.Now()
	addr, trusted, ok := m.admit(ev)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failedLocked(ev, addr, trusted, recv)
}

// HandleBatch takes the security events of one read of AMI, in order, and
// applies the batch's fresh bans to the firewall itself, in one call,
// before it returns, unless the firewall queue is busy (then they join
// it, as with Handle). Called by the AMI reader after each read, it saves
// the hand-off of every ban to the queue's goroutine: a wake-up of another
// thread, which costs more than deciding and applying the ban. It never
// waits on the store or on a queued firewall call.
func (m *Monitor) HandleBatch(evs []ami.SecurityEvent) {
	if len(evs) == 0 {
		return
	}
	recv := m.clock.Now()
	for _, ev := range evs {
		addr, trusted, ok := m.admit(ev)
		if !ok {
			continue
		}
		m.mu.Lock()
		m.batch = true
		m.failedLocked(ev, addr, trusted, recv)
		m.batch = false
		m.mu.Unlock()
	}
	m.fwq.applyHeld()
}

// admit counts ev and returns its source if ev is a failure to count;
// a success is handled here (OnSuccessReset).
func (m *Monitor) admit(ev ami.SecurityEvent) (addr netip.Addr, trusted, ok bool) {
	m.met.event(ev.Type)
	success := ev.Type == "SuccessfulAuth"
	if !success && !m.triggers[ev.Type] {
		m.met.skip[skipIgnored].Inc()
		return addr, false, false
	}
	if len(m.services) > 0 && !m.services[strings.ToUpper(ev.Service)] {
		m.met.skip[skipService].Inc()
		return addr, false, false
	}
	addr = ev.Remote.Addr().Unmap().WithZone("")
	if !addr.IsValid() || addr.IsUnspecified() {
		m.met.skip[skipBadAddress].Inc()
		m.log.Debug("security event without a usable source address", "type", ev.Type, "service", ev.Service)
		return addr, false, false
	}
	trusted = m.trusted(addr)
	if trusted {
		m.met.skip[skipNeverBan].Inc()
	}
	if success {
		if !trusted && m.cfg.OnSuccess == OnSuccessReset {
			m.resetStrikes(m.banPrefix(addr))
		}
		return addr, trusted, false
	}
	return addr, trusted, true
}

// failedLocked counts a failure from addr received at recv and decides.
func (m *Monitor) failedLocked(ev ami.SecurityEvent, addr netip.Addr, trusted bool, recv time.Time) {
	src := netip.AddrPortFrom(addr, ev.Remote.Port())
	key := attemptKey{session: ev.SessionID, source: src}
	isNew := m.groups.observe(key, recv)
	if endsAttempt(ev) {
		// The next event with this key is a new attempt, however soon it
		// comes: an attacker reusing one Call-ID must not get free guesses.
		m.groups.close(key)
	}
	if !isNew {
		return // another event of an attempt already counted
	}
	m.met.attempts.Inc()
	if trusted {
		return // counted as an attempt, never as a strike
	}
	m.met.strikes.Inc()
	p := m.banPrefix(addr)
	rec := m.recordLocked(p, recv)
	rec.strikes++
	if m.bannedLocked(p, recv) {
		return // in flight before the ban took effect; nothing new to decide
	}
	w := why{typ: ev.Type, service: ev.Service, account: ev.AccountID}
	if rec.strikes >= m.cfg.Threshold {
		// The shared strike counter is not bumped for an attempt that bans
		// at once: its answer could not change anything, and skipping it
		// saves a store round trip per ban.
		m.banLocked(p, rec, recv, recv, w.String())
		return
	}
	m.counters.enqueue(counterOp{kind: opStrike, prefix: p, recv: recv, why: w})
}

// trusted reports whether addr is on the never-ban list.
func (m *Monitor) trusted(addr netip.Addr) bool {
	for _, n := range m.neverBan {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// overlapsNeverBan reports whether banning p would ban a trusted address.
func (m *Monitor) overlapsNeverBan(p netip.Prefix) bool {
	for _, n := range m.neverBan {
		if n.Overlaps(p) {
			return true
		}
	}
	return false
}

// banPrefix is the prefix banned for a source: the configured prefix
// length, narrowed to the host if the wider prefix holds a trusted address.
func (m *Monitor) banPrefix(addr netip.Addr) netip.Prefix {
	bits := m.cfg.IPv4PrefixLen
	if addr.Is6() {
		bits = m.cfg.IPv6PrefixLen
	}
	p, _ := addr.Prefix(bits)
	if p.Bits() < addr.BitLen() && m.overlapsNeverBan(p) {
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	return p
}

// recordLocked returns p's record, with expired counters cleared.
func (m *Monitor) recordLocked(p netip.Prefix, now time.Time) *record {
	r := m.records[p]
	if r == nil {
		if len(m.records) >= m.cfg.MaxTracked {
			m.evictRecordsLocked()
		}
		r = &record{}
		m.records[p] = r
	}
	if !now.Before(r.strikesExp) {
		r.strikes, r.strikesExp = 0, now.Add(m.cfg.StrikeWindow)
	}
	if !now.Before(r.escalExp) {
		r.escal, r.escalExp = 0, now.Add(m.cfg.EscalationWindow)
	}
	return r
}

// evictRecordsLocked frees an eighth of the room when MaxTracked addresses
// are tracked. Local counts are only estimates (the store holds the shared
// ones, and bans live in m.bans), so dropping some costs precision, not
// correctness. Map order is random, so this is a random eviction, and it
// always makes progress: amortised O(1) per new address.
func (m *Monitor) evictRecordsLocked() {
	target := m.cfg.MaxTracked - m.cfg.MaxTracked/8
	for p := range m.records {
		if len(m.records) <= target {
			return
		}
		delete(m.records, p)
	}
}

// bannedLocked reports whether p is banned now.
func (m *Monitor) bannedLocked(p netip.Prefix, now time.Time) bool {
	lb := m.bans[p]
	return lb != nil && (lb.ban.Permanent || now.Before(lb.ban.Expires))
}

// banDuration is the length of a temporary ban after prior earlier ones.
func (m *Monitor) banDuration(prior int64) time.Duration {
	d := float64(m.cfg.BanTime)
	if m.cfg.BanTimeFactor <= 1 {
		return m.cfg.BanTime
	}
	for i := int64(0); i < prior && d < float64(m.cfg.MaxBanTime); i++ {
		d *= m.cfg.BanTimeFactor
	}
	return min(time.Duration(d), m.cfg.MaxBanTime)
}

// banLocked decides a ban of p: permanent once PermanentAfter temporary bans
// are known within the escalation window, temporary otherwise.
func (m *Monitor) banLocked(p netip.Prefix, rec *record, now, recv time.Time, reason string) {
	b := state.Ban{Prefix: p, Reason: reason, Server: m.server, Strikes: rec.strikes, Created: now}
	if m.cfg.PermanentAfter > 0 && rec.escal >= m.cfg.PermanentAfter {
		b.Permanent = true
		b.Reason += fmt.Sprintf(" (after %d temporary bans)", rec.escal)
	} else {
		b.Expires = now.Add(m.banDuration(rec.escal))
		rec.escal++
		if m.cfg.PermanentAfter > 0 || m.cfg.BanTimeFactor > 1 { // else nobody reads the count
			m.counters.enqueue(counterOp{kind: opEscalate, prefix: p, recv: recv})
		}
	}
	m.setBanLocked(b, false, recv)
	m.met.bans.WithLabelValues(kind(b.Permanent), "local").Inc()
	m.writer.put(b, nil)
	if m.banLog.allow(m.log, now) {
		m.log.Info("ban", "prefix", p, "permanent", b.Permanent, "expires", b.Expires, "strikes", b.Strikes, "reason", b.Reason)
	}
}

// setBanLocked makes b enforced here and queues it for the firewall, or
// for the end of the batch that HandleBatch is deciding.
func (m *Monitor) setBanLocked(b state.Ban, confirmed bool, recv time.Time) {
	m.seq++
	m.bans[b.Prefix] = &localBan{ban: b, seq: m.seq, confirmed: confirmed}
	op := fwOp{kind: fwAdd, prefix: b.Prefix, expires: b.Expires, recv: recv}
	if m.batch {
		m.fwq.hold(op)
		return
	}
	m.fwq.push(op)
}

// removeBanLocked stops enforcing p here.
func (m *Monitor) removeBanLocked(p netip.Prefix) bool {
	if _, ok := m.bans[p]; !ok {
		return false
	}
	m.seq++
	delete(m.bans, p)
	m.fwq.del(p)
	return true
}

// onStrikeCount takes the store's cluster-wide strike count for p.
func (m *Monitor) onStrikeCount(p netip.Prefix, n int64, recv time.Time, w why) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	rec := m.recordLocked(p, now)
	if n <= rec.strikes {
		return
	}
	rec.strikes = n
	if n >= m.cfg.Threshold && !m.bannedLocked(p, now) {
		m.banLocked(p, rec, now, recv, w.String()+" (cluster-wide)")
	}
}

// onEscalation takes the store's cluster-wide count of temporary bans of p,
// this one included; past PermanentAfter, the current ban becomes permanent.
func (m *Monitor) onEscalation(p netip.Prefix, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	rec := m.recordLocked(p, now)
	rec.escal = max(rec.escal, n)
	if m.cfg.PermanentAfter == 0 || n <= m.cfg.PermanentAfter {
		return
	}
	lb := m.bans[p]
	if lb == nil || lb.ban.Permanent || !now.Before(lb.ban.Expires) {
		return // the next ban will be permanent
	}
	b := lb.ban
	b.Permanent, b.Expires = true, time.Time{}
	b.Reason += fmt.Sprintf(" (after %d temporary bans)", n-1)
	m.setBanLocked(b, false, time.Time{})
	m.met.bans.WithLabelValues(kind(true), "local").Inc()
	m.writer.put(b, nil)
	m.log.Info("ban made permanent", "prefix", p, "temporary_bans", n-1)
}

// resetStrikes applies OnSuccessReset: here at once, and again when the
// store has reset, after any strike counts queued before it came back.
func (m *Monitor) resetStrikes(p netip.Prefix) {
	m.onReset(p)
	m.counters.enqueue(counterOp{kind: opReset, prefix: p})
}

func (m *Monitor) onReset(p netip.Prefix) {
	m.mu.Lock()
	if r := m.records[p]; r != nil {
		r.strikes = 0
	}
	m.mu.Unlock()
}

func kind(permanent bool) string {
	if permanent {
		return "permanent"
	}
	return "temporary"
}

func strikeKey(p netip.Prefix) string     { return "intrusion:strikes:" + p.String() }
func escalationKey(p netip.Prefix) string { return "intrusion:escalation:" + p.String() }

// why is what a failed attempt was; it becomes a ban's reason.
type why struct{ typ, service, account string }

// String describes a failed attempt for operators. The account name comes
// from the attacker, so it is shortened and stripped of control characters;
// secrets are never part of a SecurityEvent.
func (w why) String() string {
	acct := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, w.account)
	if len(acct) > 40 {
		acct = acct[:40] + "..."
	}
	return "failed " + w.service + " login (" + w.typ + ", account " + strconv.Quote(acct) + ")"
}
