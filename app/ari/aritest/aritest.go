// Package aritest provides an in-memory ari.Client for tests: Stasis:
// states stored like astdb, echo events for writes like Asterisk, injected
// failures and delays, and a log of every write.
package aritest

import (
	"context"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
)

// Write is one successful SetStasisState call.
type Write struct {
	Name, State string
	At          time.Time
}

// Fake implements ari.Client in memory. The zero value is not usable; use New.
type Fake struct {
	node   string
	events chan ari.DeviceStateEvent
	signal chan struct{}

	mu       sync.Mutex
	stasis   map[string]string
	devices  map[string]string
	writes   []Write
	putErr   map[string]error
	listErr  error
	delay    time.Duration
	onPut    func(name, state string)
	status   ari.Status
	closed   bool
	attempts int
}

// New returns a connected fake for node (its asterisk_id).
func New(node string) *Fake {
	return &Fake{
		node:    node,
		events:  make(chan ari.DeviceStateEvent, 1<<16),
		signal:  make(chan struct{}, 1),
		stasis:  map[string]string{},
		devices: map[string]string{},
		putErr:  map[string]error{},
		status:  ari.Status{Connected: true, Node: ari.Node{ID: node, Name: node}, Since: time.Now()},
	}
}

var _ ari.Client = (*Fake)(nil)

// SetStasisState implements ari.Client; it echoes a DeviceStateChanged.
func (f *Fake) SetStasisState(ctx context.Context, name, state string) error {
	if err := ari.CheckStasisWrite(name, state); err != nil {
		return err
	}
	f.mu.Lock()
	d, hook := f.delay, f.onPut
	f.attempts++
	f.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ari.ErrClosed
	}
	if err := f.putErr[name]; err != nil {
		f.mu.Unlock()
		return err
	}
	f.stasis[name] = state
	f.writes = append(f.writes, Write{Name: name, State: state, At: time.Now()})
	f.send(name, state)
	f.mu.Unlock()
	if hook != nil {
		hook(name, state)
	}
	return nil
}

// StasisStates implements ari.Client.
func (f *Fake) StasisStates(ctx context.Context) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	m := make(map[string]string, len(f.stasis))
	for k, v := range f.stasis {
		m[k] = v
	}
	return m, nil
}

// DeviceState implements ari.Client.
func (f *Fake) DeviceState(ctx context.Context, device string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.stasis[device]; ok {
		return s, nil
	}
	if s, ok := f.devices[device]; ok {
		return s, nil
	}
	return "UNKNOWN", nil
}

// Events implements ari.Client.
func (f *Fake) Events() <-chan ari.DeviceStateEvent { return f.events }

// Connected implements ari.Client.
func (f *Fake) Connected() <-chan struct{} { return f.signal }

// Status implements ari.Client.
func (f *Fake) Status() ari.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Close implements ari.Client.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.events)
	}
	return nil
}

// send queues an event; f.mu must be held.
func (f *Fake) send(device, state string) {
	if f.closed {
		return
	}
	now := time.Now()
	select {
	case f.events <- ari.DeviceStateEvent{Node: f.node, Device: device, State: state, Time: now, Received: now}:
	default:
		f.status.Dropped++
	}
}

// Emit raises a device state change on the fake server (a phone rang, ...).
func (f *Fake) Emit(device, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[device] = state
	f.send(device, state)
}

// Reconnect signals a (re)connect, as after an ARI or Asterisk restart.
func (f *Fake) Reconnect() {
	f.mu.Lock()
	f.status.Reconnects++
	f.status.Connected = true
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// Restart simulates an Asterisk restart: the Stasis states are replaced
// by stale (astdb replays old values, no events), then Reconnect.
func (f *Fake) Restart(stale map[string]string) {
	f.mu.Lock()
	f.stasis = map[string]string{}
	for k, v := range stale {
		f.stasis[k] = v
	}
	f.mu.Unlock()
	f.Reconnect()
}

// SetPutError makes writes to name fail with err (nil clears).
func (f *Fake) SetPutError(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.putErr, name)
	} else {
		f.putErr[name] = err
	}
}

// SetListError makes StasisStates fail with err (nil clears).
func (f *Fake) SetListError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listErr = err
}

// SetPutDelay makes every write take d.
func (f *Fake) SetPutDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// OnPut calls fn after every successful write (outside the lock).
func (f *Fake) OnPut(fn func(name, state string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onPut = fn
}

// SetStatus replaces the reported status (e.g. a 401 while down).
func (f *Fake) SetStatus(s ari.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = s
}

// Stasis returns the stored state of a Stasis: name ("" if unset).
func (f *Fake) Stasis(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stasis[name]
}

// Writes returns every successful write so far.
func (f *Fake) Writes() []Write {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Write(nil), f.writes...)
}

// WritesTo returns the states written to name, in order.
func (f *Fake) WritesTo(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for _, w := range f.writes {
		if w.Name == name {
			s = append(s, w.State)
		}
	}
	return s
}

// Attempts counts SetStasisState calls that passed validation, failed or not.
func (f *Fake) Attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}
