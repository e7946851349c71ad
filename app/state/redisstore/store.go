// Package redisstore implements state.Store on Redis (single server,
// Sentinel or Cluster through go-redis's UniversalClient) for clusters of
// several doorman agents.
//
// Every key lives under one hash tag, "{doorman}:..." for the default
// prefix, so the multi-key Lua scripts also run on Redis Cluster. Writes
// that must be seen by the other agents publish on a pub/sub channel from
// inside the same script, so storing and publishing are one atomic step.
// Entries with a lifetime (strike counters, temporary bans, registrations,
// heartbeats) are keys with an expiry, so Redis drops them by itself.
package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/asterisksupport/doorman/app/state"
)

// Store is a state.Store on Redis. It is safe for concurrent use.
type Store struct {
	cfg  Config
	rdb  redis.UniversalClient
	log  *slog.Logger
	k    keys
	once sync.Once
	done context.Context // cancelled by Close; ends the watches
	stop context.CancelFunc
}

var _ state.Store = (*Store)(nil)

// New connects to Redis as cfg says. It fails on a bad config and when
// Redis answers but refuses us (wrong password, missing ACL permission,
// untrusted certificate); when Redis is merely unreachable it logs a warning
// and returns the Store, whose calls fail until Redis is back.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := cfg.TLS.build()
	if err != nil {
		return nil, err
	}
	opts := &redis.UniversalOptions{
		Addrs:            cfg.Addrs,
		MasterName:       cfg.MasterName,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		TLSConfig:        tc,
		Protocol:         2,
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		PoolSize:         cfg.PoolSize,
		// One retry and one dial attempt per call: a dead Redis must give
		// an error quickly, the agent keeps working locally meanwhile.
		MaxRetries:               1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	s := &Store{cfg: cfg, rdb: redis.NewUniversalClient(opts), log: log, k: newKeys(cfg.KeyPrefix)}
	s.done, s.stop = context.WithCancel(context.Background())
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.ReadTimeout)
	defer cancel()
	if err := s.Ping(pctx); err != nil {
		if refused(err) {
			_ = s.Close()
			return nil, err
		}
		log.Warn("redis unreachable for now; calls fail until it is back", "redis", cfg, "err", err)
	}
	return s, nil
}

// refused tells errors where Redis (or its TLS layer) answered and said no,
// which retrying will not fix, from unreachability.
func refused(err error) bool {
	var rerr redis.Error
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	return errors.As(err, &rerr) || errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr)
}

// Client returns the underlying go-redis client (for diagnostics and tests).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Ping checks the connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Close closes the connections; running watches end.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.stop()
		err = s.rdb.Close()
	})
	if err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// keys builds key and channel names. Every name starts with the same hash
// tag so Redis Cluster puts them all in one slot.
type keys struct {
	tag string // "{doorman}:"
}

func newKeys(prefix string) keys {
	p := strings.TrimSuffix(prefix, ":")
	return keys{tag: "{" + p + "}:"}
}

// sep separates server, AOR and contact in registration ids; it cannot
// appear in any of them.
const sep = "\x00"

func (k keys) strike(key string) string  { return k.tag + "strike:" + key }
func (k keys) ban(prefix string) string  { return k.tag + "ban:" + prefix }
func (k keys) bans() string              { return k.tag + "bans" }
func (k keys) banFeed() string           { return k.tag + "feed:bans" }
func (k keys) devices(srv string) string { return k.tag + "dev:" + srv }
func (k keys) deviceFeed() string        { return k.tag + "feed:devices" }
func (k keys) regFeed() string           { return k.tag + "feed:regs" }
func (k keys) heartbeat(srv string) string {
	return k.tag + "hb:" + srv
}
func (k keys) servers() string         { return k.tag + "servers" }
func (k keys) reg(id string) string    { return k.tag + "reg:" + id }
func (k keys) aor(aor string) string   { return k.tag + "aor:" + aor }
func (k keys) srvRegs(s string) string { return k.tag + "sreg:" + s }
func regID(server, aor, contact string) string {
	return server + sep + aor + sep + contact
}
