package ami

import (
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one Subscribe channel. needConnected is set when the
// EventConnected message did not fit: it is retried before the next event
// and on every keepalive tick, because a job that misses it never resyncs.
type subscriber struct {
	ch            chan Message
	needConnected bool
}

// hub fans events out to subscribers without ever blocking the reader.
type hub struct {
	mu        sync.Mutex
	subs      map[*subscriber]struct{}
	connected *Message // the EventConnected of the current session, nil when down

	// funcs is the OnEvent functions, copied on every change (rare) and
	// read without h.mu on every event, so a function runs outside the
	// lock and may call cancel, Subscribe or OnEvent itself.
	funcs atomic.Pointer[[]*eventFunc]
	// ends is the OnBatchEnd functions, kept like funcs; delivered says
	// an event reached the functions since they last ran (reader only).
	ends      atomic.Pointer[[]*endFunc]
	delivered bool

	received, dropped atomic.Uint64
}

func (h *hub) subscribe(buf int) (<-chan Message, func()) {
	s := &subscriber{ch: make(chan Message, max(buf, 1))}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	h.subs[s] = struct{}{}
	if h.connected != nil {
		// Already logged in: start the channel with EventConnected, so a
		// late subscriber still knows to resynchronise.
		s.ch <- *h.connected
	}
	h.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			close(s.ch)
			h.mu.Unlock()
		})
	}
}

// eventFunc is one OnEvent registration; its address is its identity.
type eventFunc struct{ f func(*Message) }

// onEvent registers f, called by the reader with every server event.
func (h *hub) onEvent(f func(*Message)) func() {
	return register(&h.mu, &h.funcs, &eventFunc{f: f})
}

// endFunc is one OnBatchEnd registration; its address is its identity.
type endFunc struct{ f func() }

// onBatchEnd registers f, called by the reader when it has delivered
// every event read so far.
func (h *hub) onBatchEnd(f func()) func() {
	return register(&h.mu, &h.ends, &endFunc{f: f})
}

// register adds e to the copy-on-write list at p (changed under mu, read
// by the reader without a lock) and returns the function that removes it,
// once.
func register[T any](mu *sync.Mutex, p *atomic.Pointer[[]*T], e *T) func() {
	mu.Lock()
	var list []*T
	if old := p.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, e)
	p.Store(&list)
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			var list []*T
			for _, o := range *p.Load() {
				if o != e {
					list = append(list, o)
				}
			}
			p.Store(&list)
			mu.Unlock()
		})
	}
}

// endBatch runs the OnBatchEnd functions if an event was delivered since
// they last ran. The reader calls it before each read of the connection.
func (h *hub) endBatch() {
	if !h.delivered {
		return
	}
	h.delivered = false
	if ends := h.ends.Load(); ends != nil {
		for _, e := range *ends {
			e.f()
		}
	}
}

// publish delivers one server event to every subscriber.
func (h *hub) publish(m Message) {
	h.received.Add(1)
	if funcs := h.funcs.Load(); funcs != nil {
		for _, e := range *funcs {
			e.f(&m)
		}
		h.delivered = true
	}
	h.mu.Lock()
	for s := range h.subs {
		if s.needConnected && !h.trySendConnected(s) {
			h.dropped.Add(1)
			continue
		}
		select {
		case s.ch <- m:
		default:
			h.dropped.Add(1)
		}
	}
	h.mu.Unlock()
}

// setConnected records the session state and, on login, offers the
// EventConnected message to every subscriber.
func (h *hub) setConnected(m *Message) {
	h.mu.Lock()
	h.connected = m
	for s := range h.subs {
		s.needConnected = m != nil
		if m != nil {
			h.trySendConnected(s)
		}
	}
	h.mu.Unlock()
}

// retryConnected offers a pending EventConnected again (keepalive tick).
func (h *hub) retryConnected() {
	h.mu.Lock()
	for s := range h.subs {
		if s.needConnected {
			h.trySendConnected(s)
		}
	}
	h.mu.Unlock()
}

// trySendConnected needs h.mu held.
func (h *hub) trySendConnected(s *subscriber) bool {
	if h.connected == nil {
		s.needConnected = false
		return true
	}
	select {
	case s.ch <- *h.connected:
		s.needConnected = false
		return true
	default:
		s.needConnected = true
		return false
	}
}

func connectedMessage(addr, version string, at time.Time) *Message {
	return &Message{Fields: []Field{
		{Key: "Event", Value: EventConnected},
		{Key: "Address", Value: addr},
		{Key: "AMIVersion", Value: version},
		{Key: "Time", Value: at.UTC().Format(time.RFC3339Nano)},
	}}
}
