package intrusion

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/firewall"
)

// fwQueue serialises every firewall call (backends need not be safe for
// concurrent use) in one goroutine, and batches adds and deletes: whatever
// queued up while the previous netlink call ran goes out in one call. No
// timer is involved, so a lone ban is applied at once and a flood is
// applied in large batches. hold and applyHeld let HandleBatch make the
// call itself when the queue is idle, saving the hand-off to the queue's
// goroutine.
type fwQueue struct {
	m    *Monitor
	mu   sync.Mutex
	ops  []fwOp
	held []fwOp // fresh bans of the batch HandleBatch is deciding (see hold)
	wake chan struct{}
	ctx  context.Context // run's, while it runs (under mu)

	// call is held by whoever calls the firewall: the queue's goroutine
	// from before it takes a batch until the batch is done, or applyHeld.
	call sync.Mutex

	// hmu guards the kernel's health as the queue sees it: fails counts
	// failed writes, inKernel says the last restore reached the kernel
	// with no write failing since.
	hmu      sync.Mutex
	fails    uint64
	inKernel bool
}

type fwOpKind uint8

const (
	fwAdd fwOpKind = iota
	fwDel
	fwCall
	fwBulk
)

type fwOp struct {
	kind    fwOpKind
	prefix  netip.Prefix
	expires time.Time // zero: permanent
	recv    time.Time // trigger's receive time, for the latency metric; zero: not measured
	call    func(context.Context, firewall.Firewall) error
	done    chan error
	bulk    []bulkEntry
}

// bulkEntry is one restored ban (start, resync, repair); zero expires:
// permanent.
type bulkEntry struct {
	prefix  netip.Prefix
	expires time.Time
}

// maxLiveBatch bounds a batch holding fresh bans, whose latency counts:
// every ban of a batch waits for the whole kernel transaction. (The
// nftables backend also reads a small set before adding 256 or more
// entries; it no longer reads a large one.) Restored bans (start, resync,
// repair) are not bounded: each page of them goes to the kernel in one
// Add (addBulk), which the backend splits into netlink batches.
const maxLiveBatch = 255

func newFWQueue(m *Monitor) *fwQueue {
	return &fwQueue{m: m, wake: make(chan struct{}, 1)}
}

func (q *fwQueue) push(op fwOp) {
	q.mu.Lock()
	q.flushHeldLocked()
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	q.poke()
}

// flushHeldLocked queues the held fresh bans: anything queued after them
// was decided after them and must run after them.
func (q *fwQueue) flushHeldLocked() {
	if len(q.held) > 0 {
		q.ops = append(q.ops, q.held...)
		q.held = q.held[:0]
	}
}

// hold keeps a fresh ban back for applyHeld, which HandleBatch calls at the
// end of its batch; an operation pushed meanwhile queues it first.
func (q *fwQueue) hold(op fwOp) {
	q.mu.Lock()
	q.held = append(q.held, op)
	q.mu.Unlock()
}

func (q *fwQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// applyHeld applies the held fresh bans on the calling goroutine when the
// queue is idle: nothing queued and no call running. Otherwise they join
// the queue. Taking the call lock before a batch (in run) and only when
// nothing is queued (here) keeps every operation in the order decided.
func (q *fwQueue) applyHeld() {
	q.mu.Lock()
	if len(q.held) == 0 {
		q.mu.Unlock()
		return
	}
	if q.ctx == nil || q.ctx.Err() != nil || len(q.ops) > 0 || !q.call.TryLock() {
		q.flushHeldLocked()
		q.mu.Unlock()
		q.poke()
		return
	}
	ops, ctx := q.held, q.ctx
	q.held = nil
	q.mu.Unlock()
	defer q.call.Unlock()
	for len(ops) > 0 {
		n := min(len(ops), maxLiveBatch)
		q.apply(ctx, ops[:n])
		ops = ops[n:]
	}
}

func (q *fwQueue) del(p netip.Prefix) { q.push(fwOp{kind: fwDel, prefix: p}) }

// addBulk queues restored bans to go to the kernel in one Add of their
// own, in queue order with the other operations.
func (q *fwQueue) addBulk(es []bulkEntry) {
	if len(es) > 0 {
		q.push(fwOp{kind: fwBulk, bulk: es})
	}
}

// failures returns how many firewall writes have failed so far.
func (q *fwQueue) failures() uint64 {
	q.hmu.Lock()
	defer q.hmu.Unlock()
	return q.fails
}

// markRestored queues, behind everything queued so far, the note that
// the kernel holds it all, unless a firewall write failed after failures
// returned since. It does not wait.
func (q *fwQueue) markRestored(since uint64) {
	q.push(fwOp{kind: fwCall, done: make(chan error, 1), call: func(context.Context, firewall.Firewall) error {
		q.hmu.Lock()
		defer q.hmu.Unlock()
		q.inKernel = q.fails == since
		return nil
	}})
}

// healthy reports whether the last restore reached the kernel and no
// firewall write failed since.
func (q *fwQueue) healthy() bool {
	q.hmu.Lock()
	defer q.hmu.Unlock()
	return q.inKernel
}

// do runs f on the firewall in queue order and waits for it.
func (q *fwQueue) do(ctx context.Context, f func(context.Context, firewall.Firewall) error) error {
	done := make(chan error, 1)
	q.push(fwOp{kind: fwCall, call: f, done: done})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *fwQueue) run(ctx context.Context) {
	q.mu.Lock()
	q.ctx = ctx
	q.mu.Unlock()
	var batch []fwOp
	for {
		select {
		case <-ctx.Done():
			q.failCalls(ctx.Err())
			return
		case <-q.wake:
		}
		q.call.Lock()
		q.mu.Lock()
		batch, q.ops = q.ops, batch[:0]
		q.mu.Unlock()
		start, live := 0, 0
		for i, op := range batch {
			if !op.recv.IsZero() {
				live++
			}
			switch {
			case op.kind == fwCall:
				q.apply(ctx, batch[start:i])
				op.done <- op.call(ctx, q.m.fw)
				start, live = i+1, 0
			case op.kind == fwBulk:
				q.apply(ctx, batch[start:i])
				q.applyBulk(ctx, op.bulk)
				start, live = i+1, 0
			case live > 0 && i+1-start >= maxLiveBatch:
				q.apply(ctx, batch[start:i+1])
				start, live = i+1, 0
			}
		}
		q.apply(ctx, batch[start:])
		q.call.Unlock()
		clear(batch)
	}
}

// failCalls answers waiting calls when the queue stops.
func (q *fwQueue) failCalls(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ctx = nil
	q.flushHeldLocked()
	for _, op := range q.ops {
		if op.done != nil {
			op.done <- err
		}
	}
	q.ops = nil
}

// apply sends adds and deletes in one call each; for a prefix that appears
// more than once, the last operation wins.
func (q *fwQueue) apply(ctx context.Context, ops []fwOp) {
	if len(ops) == 0 {
		return
	}
	m := q.m
	last := make(map[netip.Prefix]int, len(ops))
	for i, op := range ops {
		last[op.prefix] = i
	}
	now := m.clock.Now()
	var adds []firewall.Entry
	var dels []netip.Prefix
	for i, op := range ops {
		if last[op.prefix] != i {
			continue
		}
		switch {
		case op.kind == fwDel:
			dels = append(dels, op.prefix)
		case op.expires.IsZero():
			adds = append(adds, firewall.Entry{Prefix: op.prefix})
		case op.expires.After(now):
			adds = append(adds, firewall.Entry{Prefix: op.prefix, Timeout: op.expires.Sub(now)})
		}
	}
	if len(dels) > 0 {
		if err := m.fw.Delete(ctx, dels); err != nil {
			q.failed("delete", len(dels), err)
		}
	}
	if len(adds) == 0 {
		return
	}
	if err := m.fw.Add(ctx, adds); err != nil {
		q.failed("add", len(adds), err)
		return
	}
	done := m.clock.Now()
	for i, op := range ops {
		if op.kind == fwAdd && !op.recv.IsZero() && last[op.prefix] == i {
			d := done.Sub(op.recv)
			m.met.latency.Observe(d.Seconds())
			if m.onApplied != nil {
				m.onApplied(d)
			}
		}
	}
}

// applyBulk adds restored bans in one Add (the backend splits it into
// netlink batches).
func (q *fwQueue) applyBulk(ctx context.Context, es []bulkEntry) {
	now := q.m.clock.Now()
	adds := make([]firewall.Entry, 0, len(es))
	for _, e := range es {
		switch {
		case e.expires.IsZero():
			adds = append(adds, firewall.Entry{Prefix: e.prefix})
		case e.expires.After(now):
			adds = append(adds, firewall.Entry{Prefix: e.prefix, Timeout: e.expires.Sub(now)})
		}
	}
	if len(adds) == 0 {
		return
	}
	if err := q.m.fw.Add(ctx, adds); err != nil {
		q.failed("add", len(adds), err)
	}
}

// failed logs a firewall error and asks for a repair, which re-applies
// every ban this server enforces, so nothing is lost.
func (q *fwQueue) failed(op string, n int, err error) {
	q.hmu.Lock()
	q.fails++
	q.inKernel = false
	q.hmu.Unlock()
	q.m.met.fwErrors.Inc()
	if q.m.running.Load() {
		q.m.log.Warn("firewall "+op+" failed; repairing", "entries", n, "err", err)
	}
	select {
	case q.m.repair <- struct{}{}:
	default:
	}
}
