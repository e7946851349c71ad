package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
)

// batchMax bounds the items of one script call, so one call keeps Redis
// busy for well under a millisecond and its reply stays small; longer
// batches take one call (one round trip) per batchMax items.
const batchMax = 512

// incrManyScript is strikeScript over every key: KEYS counters, ARGV their
// windows in ms; returns the new values in order.
var incrManyScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 or redis.call('PTTL', KEYS[i]) == -1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[i])
  end
  out[i] = n
end
return out`)

// putBansScript is putBanScript over several bans with one feed message:
// KEYS ban keys then the index; ARGV channel, event, now ms, then per ban
// json, expiry ms (0 = permanent), member.
var putBansScript = redis.NewScript(`
local n = #KEYS - 1
local idx = KEYS[n + 1]
for i = 1, n do
  local a = 3 + (i - 1) * 3
  if ARGV[a + 2] == '0' then
    redis.call('SET', KEYS[i], ARGV[a + 1])
    redis.call('ZADD', idx, 'inf', ARGV[a + 3])
  else
    redis.call('SET', KEYS[i], ARGV[a + 1], 'PXAT', ARGV[a + 2])
    redis.call('ZADD', idx, ARGV[a + 2], ARGV[a + 3])
  end
end
redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n`)

// IncrMany does Incr(keys[i], windows[i]) for every i, in one script call
// per batchMax keys, and returns the new values in order. On an error the
// counters of earlier calls stay incremented.
func (s *Store) IncrMany(ctx context.Context, keys []string, windows []time.Duration) ([]int64, error) {
	if err := checkWindows(keys, windows); err != nil {
		return nil, err
	}
	out := make([]int64, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), batchMax)
		ks, args := s.incrArgs(keys[:n], windows[:n])
		vals, err := incrReplies(incrManyScript.Run(ctx, s.rdb, ks, args...), n)
		if err != nil {
			return nil, fmt.Errorf("redisstore: incr %d counters: %w", len(keys), err)
		}
		out = append(out, vals...)
		keys, windows = keys[n:], windows[n:]
	}
	return out, nil
}

func (s *Store) incrArgs(keys []string, windows []time.Duration) ([]string, []any) {
	ks := make([]string, len(keys))
	args := make([]any, len(keys))
	for i := range keys {
		ks[i] = s.k.strike(keys[i])
		args[i] = max(windows[i].Milliseconds(), 1)
	}
	return ks, args
}

func incrReplies(cmd *redis.Cmd, n int) ([]int64, error) {
	vals, err := cmd.Int64Slice()
	if err == nil && len(vals) != n {
		err = fmt.Errorf("%d replies for %d keys", len(vals), n)
	}
	return vals, err
}

func checkWindows(keys []string, windows []time.Duration) error {
	if len(keys) != len(windows) {
		return fmt.Errorf("redisstore: incr many: %d keys but %d windows", len(keys), len(windows))
	}
	for i, w := range windows {
		if w <= 0 {
			return fmt.Errorf("redisstore: incr %q: window %v must be positive", keys[i], w)
		}
	}
	return nil
}

// WriteRound does PutBans(bans) and IncrMany(keys, windows) in one round
// trip (two script calls in one pipeline) when each fits one call, else
// one after the other. putErr is the bans' error, incrErr the counters'.
// A writer that sends both kinds saves a round trip, and the wake-ups
// that come with it, per round.
func (s *Store) WriteRound(ctx context.Context, bans []state.Ban, keys []string, windows []time.Duration) (counts []int64, putErr, incrErr error) {
	if err := checkWindows(keys, windows); err != nil {
		return nil, nil, err
	}
	if len(bans) == 0 || len(keys) == 0 || len(bans) > batchMax || len(keys) > batchMax {
		if len(bans) > 0 {
			putErr = s.PutBans(ctx, bans)
		}
		if len(keys) > 0 {
			counts, incrErr = s.IncrMany(ctx, keys, windows)
		}
		return counts, putErr, incrErr
	}
	norm, err := normalizeBans(bans)
	if err != nil {
		return nil, err, nil
	}
	pks, pargs, err := s.putBansArgs(norm)
	if err != nil {
		return nil, fmt.Errorf("redisstore: put %d bans: %w", len(bans), err), nil
	}
	iks, iargs := s.incrArgs(keys, windows)
	var putCmd, incrCmd *redis.Cmd
	// Each command's own error is read below; Pipelined's is the first.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		putCmd = putBansScript.EvalSha(ctx, p, pks, pargs...)
		incrCmd = incrManyScript.EvalSha(ctx, p, iks, iargs...)
		return nil
	})
	// A Redis that has not cached a script yet (restarted, or the first
	// round) answers NOSCRIPT and ran nothing: Run loads it.
	if redis.HasErrorPrefix(putCmd.Err(), "NOSCRIPT") {
		putCmd = putBansScript.Run(ctx, s.rdb, pks, pargs...)
	}
	if redis.HasErrorPrefix(incrCmd.Err(), "NOSCRIPT") {
		incrCmd = incrManyScript.Run(ctx, s.rdb, iks, iargs...)
	}
	if err := putCmd.Err(); err != nil {
		putErr = fmt.Errorf("redisstore: put %d bans: %w", len(bans), err)
	}
	counts, err = incrReplies(incrCmd, len(keys))
	if err != nil {
		incrErr = fmt.Errorf("redisstore: incr %d counters: %w", len(keys), err)
	}
	return counts, putErr, incrErr
}

// PutBans does PutBan for each ban, in one script call and one feed
// message per batchMax bans. Nothing is written if a ban is invalid; on a
// store error the bans of earlier calls stay stored (and published).
func (s *Store) PutBans(ctx context.Context, bans []state.Ban) error {
	norm, err := normalizeBans(bans)
	if err != nil {
		return err
	}
	for len(norm) > 0 {
		n := min(len(norm), batchMax)
		if err := s.putBans(ctx, norm[:n]); err != nil {
			return fmt.Errorf("redisstore: put %d bans: %w", len(norm), err)
		}
		norm = norm[n:]
	}
	return nil
}

func (s *Store) putBans(ctx context.Context, bans []state.Ban) error {
	ks, args, err := s.putBansArgs(bans)
	if err != nil {
		return err
	}
	return putBansScript.Run(ctx, s.rdb, ks, args...).Err()
}

// putBansArgs gives putBansScript's keys and arguments for normalized bans.
func (s *Store) putBansArgs(bans []state.Ban) ([]string, []any, error) {
	ev, err := encodeBanEvents(state.Added, bans)
	if err != nil {
		return nil, nil, err
	}
	ks := make([]string, 0, len(bans)+1)
	args := make([]any, 0, 3+3*len(bans))
	args = append(args, s.k.banFeed(), ev, time.Now().UnixMilli())
	for _, b := range bans {
		js, err := encodeBan(b)
		if err != nil {
			return nil, nil, fmt.Errorf("ban %v: %w", b.Prefix, err)
		}
		member := b.Prefix.String()
		ks = append(ks, s.k.ban(member))
		args = append(args, js, strconv.FormatInt(banExpiry(b), 10), member)
	}
	ks = append(ks, s.k.bans())
	return ks, args, nil
}

// normalizeBans validates bans and returns their stored forms.
func normalizeBans(bans []state.Ban) ([]state.Ban, error) {
	norm := make([]state.Ban, len(bans))
	for i, b := range bans {
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("redisstore: put: %w", err)
		}
		norm[i] = normalizeBan(b)
	}
	return norm, nil
}

// normalizeBan is the stored form of a valid ban: masked prefix, no
// expiry when permanent.
func normalizeBan(b state.Ban) state.Ban {
	b.Prefix = b.Prefix.Masked()
	if b.Permanent {
		b.Expires = time.Time{}
	}
	return b
}

// banExpiry is the ban key's expiry in Unix ms, 0 for permanent.
func banExpiry(b state.Ban) int64 {
	if b.Permanent {
		return 0
	}
	return max(b.Expires.UnixMilli(), 1)
}
