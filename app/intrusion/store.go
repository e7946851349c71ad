package intrusion

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// BatchBans may be implemented by a state.Bans that can pipeline. The
// Monitor then writes whatever queued up in one round trip per kind instead
// of one per item, which is what keeps a flood of failed attempts cheap.
// (A suggested addition to state.Bans; optional here.)
type BatchBans interface {
	// IncrMany does Incr(keys[i], windows[i]) for every i and returns the
	// new values in order.
	IncrMany(ctx context.Context, keys []string, windows []time.Duration) ([]int64, error)
	// PutBans does PutBan for each ban.
	PutBans(ctx context.Context, bans []state.Ban) error
}

// RoundWriter may be implemented by a BatchBans store that can send ban
// decisions and counter updates in one round trip. The ban writer then
// takes the counter updates waiting at each of its rounds along: under a
// flood, counters need no rounds of their own.
type RoundWriter interface {
	// WriteRound does PutBans(bans) and IncrMany(keys, windows); putErr is
	// the first's error, counts and incrErr the second's result.
	WriteRound(ctx context.Context, bans []state.Ban, keys []string, windows []time.Duration) (counts []int64, putErr, incrErr error)
}

// banWriter writes ban decisions to the store in the background and keeps
// them until the store has taken them: while the store is down, decisions
// wait (the newest per prefix wins) and are retried with backoff, so no
// ban is lost.
type banWriter struct {
	m       *Monitor
	mu      sync.Mutex
	pending map[netip.Prefix]*banOp
	spare   map[netip.Prefix]*banOp
	wake    chan struct{} // urgent rounds: operator calls, kick
	// due fires gatherFor after the first decision of a round. The
	// deciding goroutine arms it: no wake-up of the writer per decision,
	// one per round.
	due       *time.Timer
	lastRound time.Time // when the previous round's first decision came
	down      bool
	urgent    bool
}

type banOp struct {
	del  bool // DeleteBan and reset the counters; else PutBan
	ban  state.Ban
	done chan error // operator calls wait for the first attempt
}

const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

func newBanWriter(m *Monitor) *banWriter {
	due := time.NewTimer(time.Hour)
	due.Stop()
	return &banWriter{m: m, pending: make(map[netip.Prefix]*banOp), spare: make(map[netip.Prefix]*banOp),
		wake: make(chan struct{}, 1), due: due}
}

func (w *banWriter) queue(p netip.Prefix, op *banOp) {
	w.mu.Lock()
	if old := w.pending[p]; old != nil && old.done != nil {
		old.done <- nil // superseded by a newer decision
		old.done = nil
	}
	// While the store is down, the retry timer drives the rounds.
	first := len(w.pending) == 0 && !w.down
	gather := gatherFor
	if first {
		now := time.Now()
		if now.Sub(w.lastRound) < denseRounds {
			gather = gatherDense
		}
		w.lastRound = now
	}
	w.pending[p] = op
	// Read under the lock: once op is pending, a round may take it and
	// clear op.done (requeue) at any time.
	waiting := op.done != nil
	w.urgent = w.urgent || waiting
	w.mu.Unlock()
	switch {
	case waiting:
		w.poke()
	case first:
		w.due.Reset(gather)
	}
}

func (w *banWriter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// kick retries at once, skipping the backoff: the store is back (the feed
// resynced) or an operator is waiting.
func (w *banWriter) kick() {
	w.mu.Lock()
	w.urgent = true
	w.mu.Unlock()
	w.poke()
}

func (w *banWriter) takeUrgent() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.urgent
	w.urgent = false
	return u
}

// put queues b; done (optional, buffered) gets the first write's result.
func (w *banWriter) put(b state.Ban, done chan error) {
	w.queue(b.Prefix, &banOp{ban: b, done: done})
}

func (w *banWriter) remove(p netip.Prefix, done chan error) {
	w.queue(p, &banOp{del: true, ban: state.Ban{Prefix: p}, done: done})
}

func (w *banWriter) pendingLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

func (w *banWriter) run(ctx context.Context) {
	delay := retryMin
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			if !w.takeUrgent() && retry != nil {
				continue // backing off; the retry timer will flush
			}
		case <-w.due.C:
			if retry != nil {
				continue
			}
		case <-retry:
			retry = nil
		}
		if w.flush(ctx) {
			delay = retryMin
			continue
		}
		retry = time.After(delay)
		delay = min(2*delay, retryMax)
	}
}

// flush writes everything pending and reports whether the store took it.
func (w *banWriter) flush(ctx context.Context) bool {
	w.mu.Lock()
	ops := w.pending
	w.pending, w.spare = w.spare, nil // two maps in turn: no regrowth per round
	wasDown := w.down
	w.mu.Unlock()
	defer func() {
		clear(ops)
		w.mu.Lock()
		w.spare = ops
		w.mu.Unlock()
	}()
	if len(ops) == 0 {
		return true
	}
	m := w.m
	now := m.clock.Now()
	var failed error
	var puts []*banOp
	cc := chunkCtx{parent: ctx, timeout: m.cfg.StoreTimeout}
	defer cc.done()
	for p, op := range ops {
		if failed != nil {
			w.requeue(p, op, failed) // not tried: the store just failed
			continue
		}
		if !op.del && !op.ban.Permanent && !op.ban.Expires.After(now) {
			w.finish(op, nil) // expired while waiting: nothing left to share
			continue
		}
		if !op.del {
			if _, ok := m.store.(BatchBans); ok {
				puts = append(puts, op)
				continue
			}
		}
		err := w.write(cc.next(), op)
		if err != nil {
			failed = err
			w.requeue(p, op, err)
			continue
		}
		w.finish(op, nil)
	}
	if len(puts) > 0 && failed == nil {
		failed = w.writeBatch(ctx, puts)
	} else {
		for _, op := range puts {
			w.requeue(op.ban.Prefix, op, failed)
		}
	}
	w.mu.Lock()
	w.down = failed != nil
	left := len(w.pending)
	w.mu.Unlock()
	switch {
	case failed != nil && !wasDown:
		m.log.Warn("store unavailable; enforcing bans locally and queueing them", "pending", left, "err", failed)
	case failed == nil && wasDown:
		m.log.Info("store is back; queued ban decisions written", "written", len(ops))
	}
	return failed == nil
}

func (w *banWriter) write(ctx context.Context, op *banOp) error {
	m := w.m
	if !op.del {
		if err := m.store.PutBan(ctx, op.ban); err != nil {
			m.met.storeErrors.WithLabelValues("put_ban").Inc()
			return fmt.Errorf("intrusion: store ban %s: %w", op.ban.Prefix, err)
		}
		m.confirm(op.ban)
		return nil
	}
	p := op.ban.Prefix
	err := errors.Join(m.store.DeleteBan(ctx, p), m.store.Reset(ctx, strikeKey(p)), m.store.Reset(ctx, escalationKey(p)))
	if err != nil {
		m.met.storeErrors.WithLabelValues("delete_ban").Inc()
		return fmt.Errorf("intrusion: store unban %s: %w", p, err)
	}
	return nil
}

func (w *banWriter) writeBatch(ctx context.Context, ops []*banOp) error {
	m := w.m
	bans := make([]state.Ban, len(ops))
	for i, op := range ops {
		bans[i] = op.ban
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	var err error
	rw, ok := m.store.(RoundWriter)
	if cops := m.counters.takeRound(ok); len(cops) > 0 {
		keys, windows := m.counters.keys(cops)
		var counts []int64
		var incrErr error
		counts, err, incrErr = rw.WriteRound(ctx, bans, keys, windows)
		m.counters.finishRound(cops, counts, incrErr)
	} else {
		err = m.store.(BatchBans).PutBans(ctx, bans)
	}
	if err != nil {
		m.met.storeErrors.WithLabelValues("put_ban").Inc()
		err = fmt.Errorf("intrusion: store %d bans: %w", len(bans), err)
		for _, op := range ops {
			w.requeue(op.ban.Prefix, op, err)
		}
		return err
	}
	for _, op := range ops {
		m.confirm(op.ban)
		w.finish(op, nil)
	}
	return nil
}

// requeue keeps op for the next round unless a newer decision replaced it.
func (w *banWriter) requeue(p netip.Prefix, op *banOp, err error) {
	w.mu.Lock()
	done := op.done
	if err != nil {
		op.done = nil
	}
	if _, newer := w.pending[p]; !newer {
		w.pending[p] = op
	}
	w.mu.Unlock()
	if err != nil && done != nil {
		done <- err
	}
}

func (w *banWriter) finish(op *banOp, err error) {
	if op.done != nil {
		op.done <- err
	}
}

// confirm notes that the store has b.
func (m *Monitor) confirm(b state.Ban) {
	m.mu.Lock()
	if lb := m.bans[b.Prefix]; lb != nil && sameBan(lb.ban, b) && !lb.confirmed {
		// A change for reconcile: a listing taken before this write
		// must not remove the ban as "gone from the store".
		m.seq++
		lb.seq, lb.confirmed = m.seq, true
	}
	m.mu.Unlock()
}

// sameBan compares the parts of a ban that matter for enforcement.
func sameBan(a, b state.Ban) bool {
	return a.Prefix == b.Prefix && a.Permanent == b.Permanent && a.Expires.Equal(b.Expires)
}

// counterWorkers update the shared strike and escalation counters. Each
// prefix always goes to the same worker, so its updates stay in order,
// while several workers hide the store's round trips. Counter updates that
// fail are dropped (counted): they only refine local decisions, which go on
// without them.
type counterWorkers struct {
	m      *Monitor
	seed   maphash.Seed
	shards []*counterShard
}

type counterShard struct {
	mu   sync.Mutex
	ops  []counterOp
	busy bool // a taken round is being written (tests wait for it to end)
	// due fires gatherCounters after the first update of a round; the
	// enqueuing goroutine arms it, so the worker wakes once per round.
	due *time.Timer
}

type counterKind uint8

const (
	opStrike counterKind = iota
	opEscalate
	opReset
)

type counterOp struct {
	kind   counterKind
	prefix netip.Prefix
	recv   time.Time
	why    why
}

// maxCounterQueue bounds each worker's backlog while the store is slow.
const maxCounterQueue = 100_000

func newCounterWorkers(m *Monitor, n int) *counterWorkers {
	c := &counterWorkers{m: m, seed: maphash.MakeSeed()}
	for range n {
		due := time.NewTimer(time.Hour)
		due.Stop()
		c.shards = append(c.shards, &counterShard{due: due})
	}
	return c
}

func (c *counterWorkers) enqueue(op counterOp) {
	s := c.shards[maphash.Comparable(c.seed, op.prefix)%uint64(len(c.shards))]
	s.mu.Lock()
	if len(s.ops) >= maxCounterQueue {
		s.mu.Unlock()
		c.m.met.storeErrors.WithLabelValues("overflow").Inc()
		return
	}
	// A round being written has emptied ops: the next one starts now.
	first := len(s.ops) == 0
	s.ops = append(s.ops, op)
	s.mu.Unlock()
	if first {
		s.due.Reset(gatherCounters)
	}
}

func (c *counterWorkers) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range c.shards {
		wg.Go(func() { c.runShard(ctx, s) })
	}
	wg.Wait()
}

func (c *counterWorkers) runShard(ctx context.Context, s *counterShard) {
	var batch []counterOp
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.due.C:
		}
		s.mu.Lock()
		if s.busy { // the ban writer sends a round of ours: keep the order
			s.mu.Unlock()
			s.due.Reset(gatherCounters)
			continue
		}
		batch, s.ops = s.ops, batch[:0]
		s.busy = len(batch) > 0
		s.mu.Unlock()
		cc := chunkCtx{parent: ctx, timeout: c.m.cfg.StoreTimeout}
		for i := 0; i < len(batch); i += chunkSize {
			chunk := batch[i:min(i+chunkSize, len(batch))]
			if bb, ok := c.m.store.(BatchBans); ok {
				c.batch(cc.next(), bb, chunk)
				continue
			}
			for _, op := range chunk {
				c.one(cc.next(), op)
			}
		}
		cc.done()
		clear(batch)
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}
}

// takeRound takes the updates waiting for the only worker, for the ban
// writer's round (when the store is a RoundWriter: can), unless the worker
// is writing a round itself, or a reset waits (its order against the
// worker's round would not be kept), or they would not fit one call.
func (c *counterWorkers) takeRound(can bool) []counterOp {
	if !can || len(c.shards) != 1 {
		return nil
	}
	s := c.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy || len(s.ops) == 0 || len(s.ops) > chunkSize {
		return nil
	}
	for _, op := range s.ops {
		if op.reset() {
			return nil
		}
	}
	ops := s.ops
	s.ops, s.busy = nil, true
	s.due.Stop() // the worker has nothing left to write
	return ops
}

// finishRound takes the results of updates sent by takeRound's caller.
func (c *counterWorkers) finishRound(ops []counterOp, counts []int64, err error) {
	if err != nil || len(counts) != len(ops) {
		c.m.met.storeErrors.WithLabelValues("incr").Add(float64(len(ops)))
	} else {
		for i, op := range ops {
			c.result(op, counts[i])
		}
	}
	s := c.shards[0]
	s.mu.Lock()
	s.busy = false
	s.mu.Unlock()
}

func (c *counterWorkers) keys(ops []counterOp) ([]string, []time.Duration) {
	keys := make([]string, len(ops))
	windows := make([]time.Duration, len(ops))
	for i, op := range ops {
		keys[i], windows[i] = c.key(op)
	}
	return keys, windows
}

func (c *counterWorkers) key(op counterOp) (string, time.Duration) {
	if op.kind == opEscalate {
		return escalationKey(op.prefix), c.m.cfg.EscalationWindow
	}
	return strikeKey(op.prefix), c.m.cfg.StrikeWindow
}

func (op counterOp) reset() bool { return op.kind == opReset }

func (c *counterWorkers) one(ctx context.Context, op counterOp) {
	m := c.m
	key, window := c.key(op)
	if op.reset() {
		if err := m.store.Reset(ctx, key); err != nil {
			m.met.storeErrors.WithLabelValues("reset").Inc()
		}
		m.onReset(op.prefix)
		return
	}
	n, err := m.store.Incr(ctx, key, window)
	if err != nil {
		m.met.storeErrors.WithLabelValues("incr").Inc()
		return
	}
	c.result(op, n)
}

// batch sends ops in order: the increments between two resets in one
// IncrMany, each reset on its own.
func (c *counterWorkers) batch(ctx context.Context, bb BatchBans, ops []counterOp) {
	for len(ops) > 0 {
		n := 0
		for n < len(ops) && !ops[n].reset() {
			n++
		}
		if n > 0 {
			c.incrMany(ctx, bb, ops[:n])
		}
		if n < len(ops) {
			c.one(ctx, ops[n])
			n++
		}
		ops = ops[n:]
	}
}

func (c *counterWorkers) incrMany(ctx context.Context, bb BatchBans, ops []counterOp) {
	keys, windows := c.keys(ops)
	ns, err := bb.IncrMany(ctx, keys, windows)
	if err != nil || len(ns) != len(ops) {
		c.m.met.storeErrors.WithLabelValues("incr").Add(float64(len(ops)))
		return
	}
	for i, op := range ops {
		c.result(op, ns[i])
	}
}

func (c *counterWorkers) result(op counterOp, n int64) {
	switch op.kind {
	case opStrike:
		c.m.onStrikeCount(op.prefix, n, op.recv, op.why)
	case opEscalate:
		c.m.onEscalation(op.prefix, n)
	}
}

// gatherFor is how long the ban writer waits after the first item of a
// round so that the items of the next events join it. It delays only
// sharing with the cluster, never the local ban. Operator calls (urgent)
// skip it.
const gatherFor = time.Millisecond

// gatherDense replaces gatherFor while bans come in a flood (the previous
// round started less than denseRounds before): one round trip then carries
// 5 ms worth of bans instead of one or two. Each round costs the writer's
// timer, the round trip and the ban feed's echo (two goroutine hops), so
// rounds, not bans, are what the store path costs in CPU.
const (
	gatherDense = 5 * time.Millisecond
	denseRounds = 20 * time.Millisecond
)

// gatherCounters is the same wait for the shared strike and escalation
// counters. They are most of the store traffic (threshold-1 strikes per
// ban) and only refine what the local counts decide, so they wait longer:
// when attempts come a few hundred microseconds apart, as from real
// clients, a 1 ms round carries one or two counters and each round costs
// a timer, a wake-up and a round trip. A cluster-wide count (an attacker
// spreading attempts over servers) is late by at most this much.
const gatherCounters = 10 * time.Millisecond

// chunkSize is how many store calls share one deadline.
const chunkSize = 256

// chunkCtx hands out one deadline per chunkSize calls instead of one per
// call: a timer per Redis command costs more than the command's encoding.
type chunkCtx struct {
	parent  context.Context
	timeout time.Duration
	n       int
	ctx     context.Context
	cancel  context.CancelFunc
}

func (c *chunkCtx) next() context.Context {
	if c.n%chunkSize == 0 {
		c.done()
		c.ctx, c.cancel = context.WithTimeout(c.parent, c.timeout)
	}
	c.n++
	return c.ctx
}

func (c *chunkCtx) done() {
	if c.cancel != nil {
		c.cancel()
	}
}
