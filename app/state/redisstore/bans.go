package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
)

// strikeScript increments a counter and starts its window on the first
// increment (or when a counter somehow lost its expiry).
var strikeScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n`)

// putBanScript: KEYS ban, index; ARGV json, expiry ms (0 = permanent),
// member, channel, event, now ms.
var putBanScript = redis.NewScript(`
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1`)

// delBanScript: KEYS ban, index; ARGV member, channel, event.
var delBanScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n`)

// Incr atomically increments counter key; it expires window after its
// first increment.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	if window <= 0 {
		return 0, fmt.Errorf("redisstore: incr %q: window %v must be positive", key, window)
	}
	ms := max(window.Milliseconds(), 1)
	n, err := strikeScript.Run(ctx, s.rdb, []string{s.k.strike(key)}, ms).Int64()
	if err != nil {
		return 0, fmt.Errorf("redisstore: incr %q: %w", key, err)
	}
	return n, nil
}

// Reset deletes counter key.
func (s *Store) Reset(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, s.k.strike(key)).Err(); err != nil {
		return fmt.Errorf("redisstore: reset %q: %w", key, err)
	}
	return nil
}

// PutBan stores b, replacing the ban of the same prefix, and publishes it.
func (s *Store) PutBan(ctx context.Context, b state.Ban) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	b = normalizeBan(b)
	js, err := encodeBan(b)
	if err != nil {
		return fmt.Errorf("redisstore: put ban %v: %w", b.Prefix, err)
	}
	ev, err := json.Marshal(wireBanEvent{Kind: state.Added, Ban: b})
	if err != nil {
		return fmt.Errorf("redisstore: put ban %v: %w", b.Prefix, err)
	}
	exp := banExpiry(b)
	member := b.Prefix.String()
	err = putBanScript.Run(ctx, s.rdb, []string{s.k.ban(member), s.k.bans()},
		js, exp, member, s.k.banFeed(), ev, time.Now().UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("redisstore: put ban %v: %w", b.Prefix, err)
	}
	return nil
}

// DeleteBan removes the ban for p, if any, and publishes the removal
// (always, so agents holding a stale copy drop it too).
func (s *Store) DeleteBan(ctx context.Context, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("redisstore: delete ban: invalid prefix")
	}
	p = p.Masked()
	ev, err := json.Marshal(wireBanEvent{Kind: state.Removed, Ban: state.Ban{Prefix: p}})
	if err != nil {
		return fmt.Errorf("redisstore: delete ban %v: %w", p, err)
	}
	member := p.String()
	err = delBanScript.Run(ctx, s.rdb, []string{s.k.ban(member), s.k.bans()},
		member, s.k.banFeed(), ev).Err()
	if err != nil {
		return fmt.Errorf("redisstore: delete ban %v: %w", p, err)
	}
	return nil
}

// mgetChunk bounds one MGET so a huge listing does not block Redis;
// mgetRound is how many go in one pipelined round trip.
const (
	mgetChunk = 500
	mgetRound = 8
)

// ListBans returns every ban that has not expired.
func (s *Store) ListBans(ctx context.Context) ([]state.Ban, error) {
	var bans []state.Ban
	err := s.ScanBans(ctx, func(page []state.Ban) error {
		bans = append(bans, page...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bans == nil {
		bans = []state.Ban{}
	}
	return bans, nil
}

// scanPage is how many bans ScanBans reads in one pipelined round trip
// (scanPage/mgetChunk MGETs) and hands over at once.
const scanPage = mgetRound * mgetChunk

// ScanBans calls fn with every ban that has not expired, scanPage at a
// time. The next page is read while fn works on the current one, so a
// consumer that writes each page elsewhere (the kernel) overlaps with
// Redis. A ban deleted between the index read and its page is skipped.
func (s *Store) ScanBans(ctx context.Context, fn func(page []state.Ban) error) error {
	now := time.Now().UnixMilli()
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.k.bans(),
		Start: "(" + strconv.FormatInt(now, 10), Stop: "+inf", ByScore: true}).Result()
	if err != nil {
		return fmt.Errorf("redisstore: list bans: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		page []state.Ban
		err  error
	}
	// Unbuffered: the reader reads the next page while fn holds this one,
	// no further ahead, so at most two pages are in memory.
	pages := make(chan result)
	defer func() {
		cancel()
		for range pages { // wait for the reader to stop
		}
	}()
	go func() {
		defer close(pages)
		for len(members) > 0 {
			n := min(scanPage, len(members))
			page, err := s.readBans(ctx, members[:n])
			members = members[n:]
			select {
			case pages <- result{page, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for r := range pages {
		if r.err != nil {
			return fmt.Errorf("redisstore: list bans: %w", r.err)
		}
		if len(r.page) == 0 {
			continue
		}
		if err := fn(r.page); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// readBans reads and decodes the bans of index members in one pipelined
// round trip of MGETs; members whose ban is gone or does not decode are
// skipped.
func (s *Store) readBans(ctx context.Context, members []string) ([]state.Ban, error) {
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = s.k.ban(m)
	}
	vals, err := s.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	bans := make([]state.Ban, 0, len(vals))
	for _, v := range vals {
		b, err := decodeBan(v)
		if err != nil {
			s.log.Warn("skipping undecodable ban", "err", err)
			continue
		}
		bans = append(bans, b)
	}
	return bans, nil
}

// mget reads keys in pipelined rounds of mgetRound MGETs of mgetChunk keys,
// so each round trip stays well within the read timeout, and returns the
// values that exist.
func (s *Store) mget(ctx context.Context, keys []string) ([]string, error) {
	out := make([]string, 0, len(keys))
	for len(keys) > 0 {
		cmds := make([]*redis.SliceCmd, 0, mgetRound)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range mgetRound {
				if len(keys) == 0 {
					break
				}
				n := min(mgetChunk, len(keys))
				cmds = append(cmds, p.MGet(ctx, keys[:n]...))
				keys = keys[n:]
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, c := range cmds {
			for _, v := range c.Val() {
				if str, ok := v.(string); ok {
					out = append(out, str)
				}
			}
		}
	}
	return out, nil
}

// WatchBans streams ban changes of every agent until ctx ends, with a
// Resync after each reconnect. It returns once the subscription is
// confirmed, so changes made after it returns are delivered.
func (s *Store) WatchBans(ctx context.Context) (<-chan state.BanEvent, error) {
	ch, err := watch(ctx, s, s.k.banFeed(), decodeBanEvents, state.BanEvent{Kind: state.Resync})
	if err != nil {
		return nil, fmt.Errorf("redisstore: watch bans: %w", err)
	}
	return ch, nil
}
