package embedded

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/asterisksupport/doorman/app/state"
)

// The file has two buckets: bans (prefix -> JSON) and registrations
// ("server\0aor\0contact" -> JSON). Strike counters, device states and
// heartbeats are not saved: agents rebuild them within seconds.
var (
	bucketBans = []byte("bans")
	bucketRegs = []byte("registrations")
)

func (k regKey) bytes() []byte {
	return []byte(k.server + "\x00" + k.aor + "\x00" + k.contact)
}

func (s *Store) openDisk(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("embedded: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketRegs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("embedded: open %s: %w", path, err)
	}
	now := s.now()
	var bad int
	err = db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			var b state.Ban
			if json.Unmarshal(v, &b) != nil || b.Validate() != nil {
				bad++
				return nil
			}
			if !banExpired(b, now) {
				s.bans[b.Prefix] = b
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRegs).ForEach(func(k, v []byte) error {
			var r state.Registration
			if json.Unmarshal(v, &r) != nil || r.Validate() != nil {
				bad++
				return nil
			}
			if now.Before(r.Expires) {
				s.addReg(r)
			}
			return nil
		})
	})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("embedded: load %s: %w", path, err)
	}
	if bad > 0 {
		s.log.Warn("embedded store: skipped undecodable entries", "file", path, "count", bad)
	}
	s.disk = db
	s.log.Info("embedded store loaded", "file", path, "bans", len(s.bans), "registrations", len(s.regs))
	return nil
}

func putJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, js)
}

func banKey(p netip.Prefix) []byte { return []byte(p.String()) }

// deleteServerRegs removes every saved registration of server.
func deleteServerRegs(tx *bolt.Tx, server string) error {
	c := tx.Bucket(bucketRegs).Cursor()
	pfx := []byte(server + "\x00")
	for k, _ := c.Seek(pfx); k != nil && strings.HasPrefix(string(k), string(pfx)); k, _ = c.Seek(pfx) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}
