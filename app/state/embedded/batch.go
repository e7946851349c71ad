package embedded

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/asterisksupport/doorman/app/state"
)

// IncrMany does Incr(keys[i], windows[i]) for every i under one lock and
// returns the new values in order.
func (s *Store) IncrMany(_ context.Context, keys []string, windows []time.Duration) ([]int64, error) {
	if len(keys) != len(windows) {
		return nil, fmt.Errorf("embedded: incr many: %d keys but %d windows", len(keys), len(windows))
	}
	for i, w := range windows {
		if w <= 0 {
			return nil, fmt.Errorf("embedded: incr %q: window %v must be positive", keys[i], w)
		}
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	out := make([]int64, len(keys))
	for i, key := range keys {
		c, ok := s.strikes[key]
		if !ok || !now.Before(c.expires) {
			c = counter{expires: now.Add(windows[i])}
		}
		c.n++
		s.strikes[key] = c
		out[i] = c.n
	}
	return out, nil
}

// PutBans does PutBan for each ban under one lock and in one file
// transaction. Nothing is stored if a ban is invalid.
func (s *Store) PutBans(_ context.Context, bans []state.Ban) error {
	norm := make([]state.Ban, len(bans))
	for i, b := range bans {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("embedded: put: %w", err)
		}
		b.Prefix = b.Prefix.Masked()
		if b.Permanent {
			b.Expires = time.Time{}
		}
		norm[i] = b
	}
	if len(norm) == 0 {
		return nil
	}
	if err := s.lock(); err != nil {
		return err
	}
	evs := make([]state.BanEvent, len(norm))
	for i, b := range norm {
		s.bans[b.Prefix] = b
		evs[i] = state.BanEvent{Kind: state.Added, Ban: b}
	}
	s.banFeed.publishMany(evs...)
	return s.unlockAndWrite("put bans", func(tx *bolt.Tx) error {
		for _, b := range norm {
			if err := putJSON(tx, bucketBans, banKey(b.Prefix), b); err != nil {
				return err
			}
		}
		return nil
	})
}
