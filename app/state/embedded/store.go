// Package embedded implements state.Store inside the doorman process, for
// a single server without Redis: everything lives in memory, and bans and
// registrations are also written to a small bbolt file so they survive a
// restart. Feeds fan out to the watchers of this process. Expired entries
// are hidden at once on reads and removed by a janitor goroutine.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/asterisksupport/doorman/app/state"
)

// JanitorInterval is how often expired entries are swept.
const JanitorInterval = time.Second

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("embedded: store closed")

// Store is an in-process state.Store. It is safe for concurrent use.
type Store struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	closed  bool
	strikes map[string]counter
	bans    map[netip.Prefix]state.Ban
	regs    map[regKey]state.Registration
	byAOR   map[string]map[regKey]struct{}
	// byServer indexes regs by server for ReplaceRegistrations.
	byServer map[string]map[regKey]struct{}
	devices  map[string]map[string]state.DeviceState // server -> device -> state
	beats    map[string]beat

	banFeed *feed[state.BanEvent]
	devFeed *feed[state.DeviceEvent]
	regFeed *feed[state.RegistrationEvent]

	// disk is nil for a memory-only store. diskMu orders file writes the way
	// the memory changes were ordered, without holding mu during fsync.
	disk   *bolt.DB
	diskMu sync.Mutex

	done chan struct{}
	wg   sync.WaitGroup
}

type counter struct {
	n       int64
	expires time.Time
}

type beat struct {
	last, expires time.Time
}

type regKey struct{ server, aor, contact string }

var _ state.Store = (*Store)(nil)

// Open returns a Store. With path "" it keeps everything in memory only;
// otherwise bans and registrations are loaded from and saved to the bbolt
// file at path (created if missing). Close stops the janitor and the feeds.
func Open(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:      log,
		now:      time.Now,
		strikes:  map[string]counter{},
		bans:     map[netip.Prefix]state.Ban{},
		regs:     map[regKey]state.Registration{},
		byAOR:    map[string]map[regKey]struct{}{},
		byServer: map[string]map[regKey]struct{}{},
		devices:  map[string]map[string]state.DeviceState{},
		beats:    map[string]beat{},
		banFeed:  newFeed(state.BanEvent{Kind: state.Resync}),
		devFeed:  newFeed(state.DeviceEvent{Kind: state.Resync}),
		regFeed:  newFeed(state.RegistrationEvent{Kind: state.Resync}),
		done:     make(chan struct{}),
	}
	if path != "" {
		if err := s.openDisk(path); err != nil {
			return nil, err
		}
	}
	s.wg.Go(s.janitor)
	return s, nil
}

// Ping reports whether the Store is open.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Close stops the janitor, ends the feeds and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.banFeed.close()
	s.devFeed.close()
	s.regFeed.close()
	s.wg.Wait()
	s.diskMu.Lock()
	defer s.diskMu.Unlock()
	if s.disk != nil {
		if err := s.disk.Close(); err != nil {
			return fmt.Errorf("embedded: close %s: %w", s.disk.Path(), err)
		}
	}
	return nil
}

// lock takes mu and fails if the Store is closed.
func (s *Store) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) janitor() {
	t := time.NewTicker(JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep removes everything expired, from memory and from the file.
func (s *Store) sweep() {
	if s.lock() != nil {
		return
	}
	now := s.now()
	for k, c := range s.strikes {
		if !now.Before(c.expires) {
			delete(s.strikes, k)
		}
	}
	var goneServers []string
	for srv, b := range s.beats {
		if !now.Before(b.expires) {
			delete(s.beats, srv)
			goneServers = append(goneServers, srv)
		}
	}
	var goneBans []netip.Prefix
	for p, b := range s.bans {
		if banExpired(b, now) {
			delete(s.bans, p)
			goneBans = append(goneBans, p)
		}
	}
	var goneRegs []regKey
	for k, r := range s.regs {
		if !now.Before(r.Expires) {
			s.dropReg(k)
			goneRegs = append(goneRegs, k)
		}
	}
	s.publishSwept(goneServers, goneRegs)
	s.diskMu.Lock()
	s.mu.Unlock()
	defer s.diskMu.Unlock()
	if len(goneBans)+len(goneRegs) == 0 {
		return
	}
	s.write("sweep", func(tx *bolt.Tx) error {
		for _, p := range goneBans {
			if err := tx.Bucket(bucketBans).Delete([]byte(p.String())); err != nil {
				return err
			}
		}
		for _, k := range goneRegs {
			if err := tx.Bucket(bucketRegs).Delete(k.bytes()); err != nil {
				return err
			}
		}
		return nil
	})
}

// unlockAndWrite releases mu and applies fn to the file (if any) in the
// order the memory changes were made.
func (s *Store) unlockAndWrite(what string, fn func(tx *bolt.Tx) error) error {
	s.diskMu.Lock()
	s.mu.Unlock()
	defer s.diskMu.Unlock()
	return s.write(what, fn)
}

// write runs fn in a file transaction; the caller holds diskMu.
func (s *Store) write(what string, fn func(tx *bolt.Tx) error) error {
	if s.disk == nil {
		return nil
	}
	if err := s.disk.Update(fn); err != nil {
		s.log.Error("embedded store: file write failed; memory is ahead of the file", "op", what, "err", err)
		return fmt.Errorf("embedded: %s: save: %w", what, err)
	}
	return nil
}
