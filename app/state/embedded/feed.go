package embedded

import (
	"context"
	"sync"
)

// maxQueue bounds what one slow watcher may hold back; past it the queue is
// dropped and the watcher gets a Resync instead, so a writer never blocks on
// a reader.
const maxQueue = 4096

// feed fans events out to every watcher of this process.
type feed[E any] struct {
	mu     sync.Mutex
	subs   map[*sub[E]]struct{}
	resync E
	closed bool
}

type sub[E any] struct {
	mu       sync.Mutex
	q        []E
	overflow bool
	wake     chan struct{}
}

func newFeed[E any](resync E) *feed[E] {
	return &feed[E]{subs: map[*sub[E]]struct{}{}, resync: resync}
}

// publish queues e for every watcher; it never blocks.
func (f *feed[E]) publish(e E) { f.publishMany(e) }

// publishMany queues es, in order, for every watcher; it never blocks.
func (f *feed[E]) publishMany(es ...E) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.mu.Lock()
		for _, e := range es {
			if len(s.q) >= maxQueue {
				s.q, s.overflow = s.q[:0], true
			}
			s.q = append(s.q, e)
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// watch returns a channel of events until ctx or done ends.
func (f *feed[E]) watch(ctx context.Context, done <-chan struct{}) (<-chan E, bool) {
	s := &sub[E]{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, false
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	out := make(chan E, 64)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		var batch []E
		for {
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			case <-done:
				return
			}
			s.mu.Lock()
			batch, s.q = s.q, batch[:0]
			lost := s.overflow
			s.overflow = false
			s.mu.Unlock()
			if lost {
				batch = append([]E{f.resync}, batch...)
			}
			for _, e := range batch {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				case <-done:
					return
				}
			}
			clear(batch)
		}
	}()
	return out, true
}

func (f *feed[E]) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}
