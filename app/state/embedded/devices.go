package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// PutDeviceState stores d and publishes it if its state changed.
func (s *Store) PutDeviceState(_ context.Context, d state.DeviceState) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("embedded: put: %w", err)
	}
	if d.Updated.IsZero() {
		d.Updated = s.now()
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	m := s.devices[d.Server]
	if m == nil {
		m = map[string]state.DeviceState{}
		s.devices[d.Server] = m
	}
	if old, ok := m[d.Device]; ok && old.State == d.State {
		return nil
	}
	m[d.Device] = d
	s.devFeed.publish(state.DeviceEvent{Kind: state.Added, State: d})
	return nil
}

// ReplaceDeviceStates makes states the whole truth for server; watchers get
// an event for each device that changed or disappeared.
func (s *Store) ReplaceDeviceStates(_ context.Context, server string, states []state.DeviceState) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("embedded: replace device states: %w", err)
	}
	now := s.now()
	next := make(map[string]state.DeviceState, len(states))
	for _, d := range states {
		d.Server = server
		if d.Updated.IsZero() {
			d.Updated = now
		}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("embedded: replace device states of %s: %w", server, err)
		}
		next[d.Device] = d
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	old := s.devices[server]
	for dev, d := range next {
		if o, ok := old[dev]; ok && o.State == d.State {
			next[dev] = o
			continue
		}
		s.devFeed.publish(state.DeviceEvent{Kind: state.Added, State: d})
	}
	for dev := range old {
		if _, ok := next[dev]; !ok {
			s.devFeed.publish(state.DeviceEvent{Kind: state.Removed,
				State: state.DeviceState{Server: server, Device: dev}})
		}
	}
	s.devices[server] = next
	return nil
}

// DeviceStates returns every stored state of live servers.
func (s *Store) DeviceStates(context.Context) ([]state.DeviceState, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	var out []state.DeviceState
	for srv, m := range s.devices {
		if !s.alive(srv, now) {
			continue
		}
		for _, d := range m {
			out = append(out, d)
		}
	}
	return out, nil
}

// WatchDeviceStates streams device changes until ctx ends or the Store
// closes.
func (s *Store) WatchDeviceStates(ctx context.Context) (<-chan state.DeviceEvent, error) {
	ch, ok := s.devFeed.watch(ctx, s.done)
	if !ok {
		return nil, ErrClosed
	}
	return ch, nil
}

// Heartbeat marks server alive for ttl.
func (s *Store) Heartbeat(_ context.Context, server string, ttl time.Duration) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("embedded: heartbeat: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("embedded: heartbeat %s: ttl %v must be positive", server, ttl)
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	now := s.now()
	s.beats[server] = beat{last: now, expires: now.Add(ttl)}
	s.regFeed.publish(state.RegistrationEvent{Kind: state.ServerAlive,
		Registration: state.Registration{Server: server, Expires: now.Add(ttl)}})
	return nil
}

// Servers returns the live servers and when each last beat.
func (s *Store) Servers(context.Context) (map[string]time.Time, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	out := make(map[string]time.Time, len(s.beats))
	for srv, b := range s.beats {
		if now.Before(b.expires) {
			out[srv] = b.last
		}
	}
	return out, nil
}
