package embedded

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/asterisksupport/doorman/app/state"
)

// addReg indexes r; the caller holds mu.
func (s *Store) addReg(r state.Registration) {
	k := regKey{r.Server, r.AOR, r.Contact}
	s.regs[k] = r
	m := s.byAOR[r.AOR]
	if m == nil {
		m = map[regKey]struct{}{}
		s.byAOR[r.AOR] = m
	}
	m[k] = struct{}{}
	m = s.byServer[r.Server]
	if m == nil {
		m = map[regKey]struct{}{}
		s.byServer[r.Server] = m
	}
	m[k] = struct{}{}
}

// dropReg unindexes k; the caller holds mu.
func (s *Store) dropReg(k regKey) {
	delete(s.regs, k)
	if m := s.byAOR[k.aor]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.byAOR, k.aor)
		}
	}
	if m := s.byServer[k.server]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.byServer, k.server)
		}
	}
}

// alive reports whether server has a current heartbeat; the caller holds mu.
func (s *Store) alive(server string, now time.Time) bool {
	b, ok := s.beats[server]
	return ok && now.Before(b.expires)
}

// PutRegistration adds or refreshes r; it expires by itself at r.Expires.
// A registration already expired is removed instead.
func (s *Store) PutRegistration(ctx context.Context, r state.Registration) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("embedded: put: %w", err)
	}
	if !s.now().Before(r.Expires) {
		return s.DeleteRegistration(ctx, r.Server, r.AOR, r.Contact)
	}
	if err := s.lock(); err != nil {
		return err
	}
	s.addReg(r)
	s.regFeed.publish(state.RegistrationEvent{Kind: state.Added, Registration: r})
	k := regKey{r.Server, r.AOR, r.Contact}
	return s.unlockAndWrite("put registration", func(tx *bolt.Tx) error {
		return putJSON(tx, bucketRegs, k.bytes(), r)
	})
}

// DeleteRegistration removes one contact.
func (s *Store) DeleteRegistration(_ context.Context, server, aor, contact string) error {
	if err := (state.Registration{Server: server, AOR: aor, Contact: contact, Expires: time.Unix(1, 0)}).Validate(); err != nil {
		return fmt.Errorf("embedded: delete: %w", err)
	}
	if err := s.lock(); err != nil {
		return err
	}
	k := regKey{server, aor, contact}
	s.dropReg(k)
	s.regFeed.publish(removedEvent(k))
	return s.unlockAndWrite("delete registration", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegs).Delete(k.bytes())
	})
}

// ReplaceRegistrations makes regs the whole truth for server. Each
// registration's Server is set to server; expired ones are left out.
func (s *Store) ReplaceRegistrations(_ context.Context, server string, regs []state.Registration) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("embedded: replace registrations: %w", err)
	}
	now := s.now()
	keep := make([]state.Registration, 0, len(regs))
	for _, r := range regs {
		r.Server = server
		if err := r.Validate(); err != nil {
			return fmt.Errorf("embedded: replace registrations of %s: %w", server, err)
		}
		if now.Before(r.Expires) {
			keep = append(keep, r)
		}
	}
	if err := s.lock(); err != nil {
		return err
	}
	evs := make([]state.RegistrationEvent, 0, len(keep))
	kept := make(map[regKey]bool, len(keep))
	for _, r := range keep {
		evs = append(evs, state.RegistrationEvent{Kind: state.Added, Registration: r})
		kept[regKey{r.Server, r.AOR, r.Contact}] = true
	}
	for k := range s.byServer[server] {
		s.dropReg(k)
		if !kept[k] {
			evs = append(evs, removedEvent(k))
		}
	}
	for _, r := range keep {
		s.addReg(r)
	}
	s.regFeed.publishMany(evs...)
	return s.unlockAndWrite("replace registrations", func(tx *bolt.Tx) error {
		if err := deleteServerRegs(tx, server); err != nil {
			return err
		}
		for _, r := range keep {
			k := regKey{r.Server, r.AOR, r.Contact}
			if err := putJSON(tx, bucketRegs, k.bytes(), r); err != nil {
				return err
			}
		}
		return nil
	})
}

// LookupAOR returns the unexpired registrations of aor on live servers.
func (s *Store) LookupAOR(_ context.Context, aor string) ([]state.Registration, error) {
	if err := state.CheckName("aor", aor); err != nil {
		return nil, fmt.Errorf("embedded: lookup: %w", err)
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	var out []state.Registration
	for k := range s.byAOR[aor] {
		r := s.regs[k]
		if now.Before(r.Expires) && s.alive(k.server, now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// AllRegistrations returns every unexpired registration on live servers.
func (s *Store) AllRegistrations(context.Context) ([]state.Registration, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	out := make([]state.Registration, 0, len(s.regs))
	for k, r := range s.regs {
		if now.Before(r.Expires) && s.alive(k.server, now) {
			out = append(out, r)
		}
	}
	return out, nil
}

func removedEvent(k regKey) state.RegistrationEvent {
	return state.RegistrationEvent{Kind: state.Removed,
		Registration: state.Registration{Server: k.server, AOR: k.aor, Contact: k.contact}}
}

// publishSwept announces what the janitor removed: expired registrations
// and servers whose heartbeat ended. The caller holds mu.
func (s *Store) publishSwept(servers []string, regs []regKey) {
	evs := make([]state.RegistrationEvent, 0, len(servers)+len(regs))
	for _, srv := range servers {
		evs = append(evs, state.RegistrationEvent{Kind: state.ServerDown, Registration: state.Registration{Server: srv}})
	}
	for _, k := range regs {
		evs = append(evs, removedEvent(k))
	}
	if len(evs) > 0 {
		s.regFeed.publishMany(evs...)
	}
}

var _ state.RegistrationWatcher = (*Store)(nil)

// WatchRegistrations streams registration and heartbeat changes until ctx
// ends or the Store closes. Expired registrations and ended heartbeats are
// announced by the janitor (within JanitorInterval); a reader too slow for
// maxQueue events gets Resync.
func (s *Store) WatchRegistrations(ctx context.Context) (<-chan state.RegistrationEvent, error) {
	ch, ok := s.regFeed.watch(ctx, s.done)
	if !ok {
		return nil, ErrClosed
	}
	return ch, nil
}
