package embedded

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/asterisksupport/doorman/app/state"
)

func banExpired(b state.Ban, now time.Time) bool {
	return !b.Permanent && !now.Before(b.Expires)
}

// Incr atomically increments counter key; it expires window after its
// first increment.
func (s *Store) Incr(_ context.Context, key string, window time.Duration) (int64, error) {
	if window <= 0 {
		return 0, fmt.Errorf("embedded: incr %q: window %v must be positive", key, window)
	}
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now := s.now()
	c, ok := s.strikes[key]
	if !ok || !now.Before(c.expires) {
		c = counter{expires: now.Add(window)}
	}
	c.n++
	s.strikes[key] = c
	return c.n, nil
}

// Reset deletes counter key.
func (s *Store) Reset(_ context.Context, key string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.strikes, key)
	return nil
}

// PutBan stores b, replacing the ban of the same prefix, saves it and
// publishes it.
func (s *Store) PutBan(_ context.Context, b state.Ban) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("embedded: put: %w", err)
	}
	b.Prefix = b.Prefix.Masked()
	if b.Permanent {
		b.Expires = time.Time{}
	}
	if err := s.lock(); err != nil {
		return err
	}
	s.bans[b.Prefix] = b
	s.banFeed.publish(state.BanEvent{Kind: state.Added, Ban: b})
	return s.unlockAndWrite("put ban", func(tx *bolt.Tx) error {
		return putJSON(tx, bucketBans, banKey(b.Prefix), b)
	})
}

// DeleteBan removes the ban for p, if any, and publishes the removal.
func (s *Store) DeleteBan(_ context.Context, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("embedded: delete ban: invalid prefix")
	}
	p = p.Masked()
	if err := s.lock(); err != nil {
		return err
	}
	delete(s.bans, p)
	s.banFeed.publish(state.BanEvent{Kind: state.Removed, Ban: state.Ban{Prefix: p}})
	return s.unlockAndWrite("delete ban", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).Delete(banKey(p))
	})
}

// ListBans returns every ban that has not expired.
func (s *Store) ListBans(context.Context) ([]state.Ban, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	out := make([]state.Ban, 0, len(s.bans))
	for _, b := range s.bans {
		if !banExpired(b, now) {
			out = append(out, b)
		}
	}
	return out, nil
}

// scanPage is how many bans ScanBans hands over at once.
const scanPage = 4096

// ScanBans calls fn with every ban that has not expired, scanPage at a
// time. The pages are cut from one snapshot, taken under the lock, so fn
// may call the Store.
func (s *Store) ScanBans(ctx context.Context, fn func(page []state.Ban) error) error {
	bans, err := s.ListBans(ctx)
	if err != nil {
		return err
	}
	for len(bans) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(scanPage, len(bans))
		if err := fn(bans[:n:n]); err != nil {
			return err
		}
		bans = bans[n:]
	}
	return nil
}

// WatchBans streams ban changes until ctx ends or the Store closes.
func (s *Store) WatchBans(ctx context.Context) (<-chan state.BanEvent, error) {
	ch, ok := s.banFeed.watch(ctx, s.done)
	if !ok {
		return nil, ErrClosed
	}
	return ch, nil
}
