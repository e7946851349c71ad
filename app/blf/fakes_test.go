package blf

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
)

// memStore is an in-memory Store with a feed, as the real stores behave:
// PutDeviceState publishes only changes, heartbeats expire after their ttl.
type memStore struct {
	mu       sync.Mutex
	states   map[source]state.DeviceState
	beats    map[string]time.Time // server -> expiry
	last     map[string]time.Time
	watchers []chan state.DeviceEvent
	putErr   error

	// Outage knobs: mute drops feed events (watchers not yet resubscribed),
	// serversErr fails Servers, hold ignores some servers' heartbeats.
	mute       bool
	serversErr error
	hold       map[string]bool
}

func newMemStore() *memStore {
	return &memStore{states: map[source]state.DeviceState{}, beats: map[string]time.Time{}, last: map[string]time.Time{}}
}

func (s *memStore) publish(ev state.DeviceEvent) {
	if s.mute && ev.Kind != state.Resync {
		return
	}
	for _, w := range s.watchers {
		select {
		case w <- ev:
		default: // a stuck watcher would get a Resync in a real store
		}
	}
}

func (s *memStore) PutDeviceState(ctx context.Context, ds state.DeviceState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	k := source{ds.Server, ds.Device}
	if old, ok := s.states[k]; ok && old.State == ds.State {
		return nil
	}
	s.states[k] = ds
	s.publish(state.DeviceEvent{Kind: state.Added, State: ds})
	return nil
}

func (s *memStore) ReplaceDeviceStates(ctx context.Context, server string, states []state.DeviceState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[source]bool{}
	for _, ds := range states {
		k := source{server, ds.Device}
		keep[k] = true
		if old, ok := s.states[k]; ok && old.State == ds.State {
			continue
		}
		s.states[k] = ds
		s.publish(state.DeviceEvent{Kind: state.Added, State: ds})
	}
	for k, ds := range s.states {
		if k.server == server && !keep[k] {
			delete(s.states, k)
			s.publish(state.DeviceEvent{Kind: state.Removed, State: ds})
		}
	}
	return nil
}

func (s *memStore) DeviceStates(ctx context.Context) ([]state.DeviceState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []state.DeviceState
	for _, ds := range s.states {
		if s.beats[ds.Server].After(now) {
			out = append(out, ds)
		}
	}
	return out, nil
}

func (s *memStore) WatchDeviceStates(ctx context.Context) (<-chan state.DeviceEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan state.DeviceEvent, 1<<16)
	s.watchers = append(s.watchers, ch)
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, w := range s.watchers {
			if w == ch {
				s.watchers = append(s.watchers[:i], s.watchers[i+1:]...)
				close(ch)
				return
			}
		}
	})
	return ch, nil
}

// resync sends Resync to every watcher, as after a store reconnect.
func (s *memStore) resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publish(state.DeviceEvent{Kind: state.Resync})
}

// restartEmpty loses every state and heartbeat, as a Redis without
// persistence that restarted, then resyncs the watchers.
func (s *memStore) restartEmpty() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.states)
	clear(s.beats)
	clear(s.last)
	s.publish(state.DeviceEvent{Kind: state.Resync})
}

// has reports server's stored state of device, live or not ("" if none).
func (s *memStore) has(server, device string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[source{server, device}].State
}

func (s *memStore) set(f func(s *memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *memStore) Heartbeat(ctx context.Context, server string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold[server] {
		return nil // lost on its way, as if the store restarted right after
	}
	s.beats[server] = time.Now().Add(ttl)
	s.last[server] = time.Now()
	return nil
}

func (s *memStore) Servers(ctx context.Context) (map[string]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serversErr != nil {
		return nil, s.serversErr
	}
	now := time.Now()
	m := map[string]time.Time{}
	for srv, exp := range s.beats {
		if exp.After(now) {
			m[srv] = s.last[srv]
		}
	}
	return m, nil
}

// fakeAMI answers DeviceStateList from a settable list and lets tests
// signal a (re)login.
type fakeAMI struct {
	mu      sync.Mutex
	devices [][2]string
	index   map[string]int // device -> position in devices, built by update
	err     error
	calls   int
	subs    []chan ami.Message
}

func (a *fakeAMI) set(devices ...[2]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.devices = devices
	a.index = nil
}

// update changes one listed device's state, as the real device list
// follows the device (benchmarks: a reconnect snapshot must not undo
// changes).
func (a *fakeAMI) update(device, state string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.index == nil {
		a.index = make(map[string]int, len(a.devices))
		for i, d := range a.devices {
			a.index[d[0]] = i
		}
	}
	if i, ok := a.index[device]; ok {
		a.devices[i][1] = state
	}
}

func (a *fakeAMI) Subscribe(buf int) (<-chan ami.Message, func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan ami.Message, buf)
	a.subs = append(a.subs, ch)
	return ch, func() {}
}

func (a *fakeAMI) Action(ctx context.Context, action ami.Message) (ami.Message, []ami.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return ami.Message{}, nil, a.err
	}
	if action.Get("Action") != "DeviceStateList" {
		return ami.Message{}, nil, errors.New("fakeAMI: unexpected action")
	}
	resp := ami.Message{Fields: []ami.Field{{Key: "Response", Value: "Success"}, {Key: "EventList", Value: "start"},
		{Key: "Message", Value: "Device State Changes will follow"}}}
	var list []ami.Message
	for _, d := range a.devices {
		list = append(list, ami.Message{Fields: []ami.Field{{Key: "Event", Value: "DeviceStateChange"},
			{Key: "Device", Value: d[0]}, {Key: "State", Value: d[1]}}})
	}
	return resp, list, nil
}

// relogin delivers the synthetic EventConnected to every subscriber.
func (a *fakeAMI) relogin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.subs {
		s <- ami.Message{Fields: []ami.Field{{Key: "Event", Value: ami.EventConnected}}}
	}
}

func (a *fakeAMI) actionCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}
