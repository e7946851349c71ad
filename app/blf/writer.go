package blf

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
)

// want is a desired Stasis: state and, for latency, when the change that
// caused it was read on its origin server (src) and reached us (feed).
type want struct {
	state     string
	src, feed time.Time
}

// writer keeps Asterisk's Stasis: states equal to the desired ones. Each
// name hashes to one worker, so writes to a name stay in order; a name is
// queued at most once, and a worker always writes the latest desired
// state, so bursts coalesce and one slow PUT delays only its own worker.
type writer struct {
	m      *Monitor
	seed   maphash.Seed
	queues []chan string

	mu       sync.Mutex
	desired  map[string]want
	written  map[string]string // what Asterisk has, as far as we know
	queued   map[string]bool
	inflight map[string]bool
	failed   map[string]bool
}

func newWriter(m *Monitor) *writer {
	w := &writer{
		m: m, seed: maphash.MakeSeed(),
		desired: map[string]want{}, written: map[string]string{},
		queued: map[string]bool{}, inflight: map[string]bool{}, failed: map[string]bool{},
	}
	for range m.cfg.Workers {
		w.queues = append(w.queues, make(chan string, 1<<14))
	}
	return w
}

// set records the desired state and queues a write if Asterisk differs.
func (w *writer) set(name string, d want) {
	w.mu.Lock()
	if old, ok := w.desired[name]; ok && old.state == d.state && d.src.IsZero() {
		d.src, d.feed = old.src, old.feed // a recompute keeps the cause's timestamps
	}
	w.desired[name] = d
	need := !w.queued[name] && !w.inflight[name] && w.written[name] != d.state
	if need {
		w.queued[name] = true
	}
	w.mu.Unlock()
	if need {
		w.queues[w.slot(name)] <- name
	}
}

func (w *writer) slot(name string) int {
	return int(maphash.String(w.seed, name) % uint64(len(w.queues)))
}

// observe replaces what we believe Asterisk has with a fresh listing.
func (w *writer) observe(actual map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name := range w.written {
		if _, ok := actual[name]; !ok && !w.inflight[name] {
			delete(w.written, name)
		}
	}
	for name, st := range actual {
		if !w.inflight[name] {
			w.written[name] = st
		}
	}
}

// retryFailed queues again every name whose last write failed.
func (w *writer) retryFailed() {
	w.mu.Lock()
	var again []string
	for name := range w.failed {
		if !w.queued[name] && !w.inflight[name] && w.written[name] != w.desired[name].state {
			w.queued[name] = true
			again = append(again, name)
		}
	}
	w.mu.Unlock()
	for _, name := range again {
		w.queues[w.slot(name)] <- name
	}
}

func (w *writer) work(ctx context.Context, i int) {
	q := w.queues[i]
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case name = <-q:
		}
		w.mu.Lock()
		w.queued[name] = false
		d := w.desired[name]
		if d.state == "" || w.written[name] == d.state {
			w.mu.Unlock()
			continue
		}
		w.inflight[name] = true
		w.mu.Unlock()

		err := w.m.ari.SetStasisState(ctx, name, d.state)
		done := time.Now()

		w.mu.Lock()
		w.inflight[name] = false
		if err == nil {
			w.written[name] = d.state
			delete(w.failed, name)
		} else {
			w.failed[name] = true
		}
		again := err == nil && !w.queued[name] && w.desired[name].state != d.state
		if again {
			w.queued[name] = true
		}
		w.mu.Unlock()
		if again {
			select {
			case q <- name:
			default:
				go func() { q <- name }() // never block on our own full queue
			}
		}

		if err != nil {
			if ctx.Err() == nil {
				cause := putCause(err)
				w.m.fail(cause, name, err, "state", d.state)
			}
			continue
		}
		w.m.met.writes.Inc()
		if !d.src.IsZero() {
			w.m.met.latency.Observe(done.Sub(d.src).Seconds())
		}
		w.m.emit(Hop{Server: w.m.server, Stage: "written", Name: name, State: d.state, Src: d.src, At: done})
	}
}

// putCause names a write failure with a bounded label.
func putCause(err error) string {
	if c := ari.StatusCode(err); c != 0 {
		return "ari_put_" + strconv.Itoa(c)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "ari_put_timeout"
	}
	return "ari_put_error"
}

func errUnmapped(device, re string) error {
	return fmt.Errorf("blf: device %q does not match devices %q", device, re)
}

// settled reports whether at least n names are desired and Asterisk has
// all of them (tests and benchmarks wait on it).
func (w *writer) settled(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.desired) < n {
		return false
	}
	for name, d := range w.desired {
		if w.queued[name] || w.inflight[name] || w.written[name] != d.state {
			return false
		}
	}
	return true
}
