package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
)

// A registration is a key "reg:<server>\0<aor>\0<contact>" holding its JSON
// and expiring at r.Expires, indexed by two sorted sets scored by expiry:
// "aor:<aor>" for LookupAOR and "sreg:<server>" for a server's full resync.
// Index entries of expired keys are trimmed on writes, skipped on reads, and
// the index sets themselves expire with their last entry.

// putRegsScript: ARGV tag, now ms, feed channel, then per registration:
// server, aor, contact, expiry ms, json. KEYS (optional) name the keys of a
// single put, for Cluster routing and ACL checks. Publishes one feed message
// (regfeed.go) with every registration.
var putRegsScript = redis.NewScript(`
local tag, now = ARGV[1], ARGV[2]
local msg = {'A'}
for i = 4, #ARGV, 5 do
  local server, aor, contact, exp, js = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local id = server .. '\0' .. aor .. '\0' .. contact
  redis.call('SET', tag .. 'reg:' .. id, js, 'PXAT', exp)
  for _, ix in ipairs({tag .. 'aor:' .. aor, tag .. 'sreg:' .. server}) do
    redis.call('ZADD', ix, exp, id)
    redis.call('ZREMRANGEBYSCORE', ix, '-inf', '(' .. now)
    local t = redis.call('PEXPIRETIME', ix)
    if t == -1 or t < tonumber(exp) then redis.call('PEXPIREAT', ix, exp) end
  end
  msg[#msg + 1] = #js .. ':' .. js
end
if #msg > 1 then redis.call('PUBLISH', ARGV[3], table.concat(msg)) end
return 1`)

// delRegsScript: ARGV tag, feed channel, then registration ids. Publishes
// one feed message with every id.
var delRegsScript = redis.NewScript(`
local tag = ARGV[1]
local msg = {'R'}
for i = 3, #ARGV do
  local id = ARGV[i]
  local a = string.find(id, '\0', 1, true)
  local b = string.find(id, '\0', a + 1, true)
  redis.call('DEL', tag .. 'reg:' .. id)
  redis.call('ZREM', tag .. 'aor:' .. string.sub(id, a + 1, b - 1), id)
  redis.call('ZREM', tag .. 'sreg:' .. string.sub(id, 1, a - 1), id)
  msg[#msg + 1] = #id .. ':' .. id
end
if #msg > 1 then redis.call('PUBLISH', ARGV[2], table.concat(msg)) end
return 1`)

// regChunk bounds the registrations one script call handles, so a big
// resync never blocks Redis (and everyone's device-state feed) for long.
const regChunk = 500

// lookupScript: KEYS aor index; ARGV tag, now ms. Returns the JSON of the
// unexpired registrations whose server has a live heartbeat.
var lookupScript = redis.NewScript(`
local tag = ARGV[1]
local out, alive = {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], '(' .. ARGV[2], '+inf', 'BYSCORE')) do
  local s = string.sub(id, 1, string.find(id, '\0', 1, true) - 1)
  local a = alive[s]
  if a == nil then
    a = redis.call('EXISTS', tag .. 'hb:' .. s) == 1
    alive[s] = a
  end
  if a then
    local v = redis.call('GET', tag .. 'reg:' .. id)
    if v then out[#out + 1] = v end
  end
end
return out`)

// PutRegistration adds or refreshes r; it expires by itself at r.Expires.
// A registration already expired is removed instead.
func (s *Store) PutRegistration(ctx context.Context, r state.Registration) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	now := time.Now()
	if !r.Expires.After(now) {
		return s.DeleteRegistration(ctx, r.Server, r.AOR, r.Contact)
	}
	args, err := regArgs(nil, r)
	if err != nil {
		return fmt.Errorf("redisstore: put registration %s: %w", r.AOR, err)
	}
	id := regID(r.Server, r.AOR, r.Contact)
	err = putRegsScript.Run(ctx, s.rdb, []string{s.k.reg(id), s.k.aor(r.AOR), s.k.srvRegs(r.Server)},
		append([]any{s.k.tag, now.UnixMilli(), s.k.regFeed()}, args...)...).Err()
	if err != nil {
		return fmt.Errorf("redisstore: put registration %s: %w", r.AOR, err)
	}
	return nil
}

func regArgs(args []any, r state.Registration) ([]any, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(args, r.Server, r.AOR, r.Contact, r.Expires.UnixMilli(), js), nil
}

// DeleteRegistration removes one contact.
func (s *Store) DeleteRegistration(ctx context.Context, server, aor, contact string) error {
	if err := (state.Registration{Server: server, AOR: aor, Contact: contact, Expires: time.Unix(1, 0)}).Validate(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	id := regID(server, aor, contact)
	err := delRegsScript.Run(ctx, s.rdb, []string{s.k.reg(id), s.k.aor(aor), s.k.srvRegs(server)}, s.k.tag, s.k.regFeed(), id).Err()
	if err != nil {
		return fmt.Errorf("redisstore: delete registration %s: %w", aor, err)
	}
	return nil
}

// ReplaceRegistrations makes regs the whole truth for server. Each
// registration's Server is set to server; expired ones are left out. It is
// close to atomic: the new entries are written first, then the server's
// other entries removed, in chunks of regChunk, so a lookup never misses a
// contact that stays registered and Redis is never blocked for long.
func (s *Store) ReplaceRegistrations(ctx context.Context, server string, regs []state.Registration) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("redisstore: replace registrations: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("redisstore: replace registrations of %s: %w", server, err)
	}
	now := time.Now()
	keep := make(map[string]bool, len(regs))
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		err := putRegsScript.Run(ctx, s.rdb, []string{s.k.srvRegs(server)},
			append([]any{s.k.tag, now.UnixMilli(), s.k.regFeed()}, args...)...).Err()
		args = args[:0]
		return err
	}
	old, err := s.rdb.ZRange(ctx, s.k.srvRegs(server), 0, -1).Result()
	if err != nil {
		return fail(err)
	}
	for _, r := range regs {
		r.Server = server
		if err := r.Validate(); err != nil {
			return fail(err)
		}
		if !r.Expires.After(now) {
			continue
		}
		keep[regID(r.Server, r.AOR, r.Contact)] = true
		if args, err = regArgs(args, r); err != nil {
			return fail(err)
		}
		if len(args) >= 5*regChunk {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	var ids []any
	for i, id := range old {
		if !keep[id] {
			ids = append(ids, id)
		}
		if len(ids) >= regChunk || i == len(old)-1 && len(ids) > 0 {
			err := delRegsScript.Run(ctx, s.rdb, []string{s.k.srvRegs(server)}, append([]any{s.k.tag, s.k.regFeed()}, ids...)...).Err()
			if err != nil {
				return fail(err)
			}
			ids = ids[:0]
		}
	}
	return nil
}

// LookupAOR returns the unexpired registrations of aor on live servers, in
// one round trip.
func (s *Store) LookupAOR(ctx context.Context, aor string) ([]state.Registration, error) {
	if err := state.CheckName("aor", aor); err != nil {
		return nil, fmt.Errorf("redisstore: lookup: %w", err)
	}
	vals, err := lookupScript.Run(ctx, s.rdb, []string{s.k.aor(aor)}, s.k.tag, time.Now().UnixMilli()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: lookup %s: %w", aor, err)
	}
	return s.decodeRegs(vals), nil
}

// AllRegistrations returns every unexpired registration on live servers.
// It reads in chunks so a large cluster does not block Redis for long.
func (s *Store) AllRegistrations(ctx context.Context) ([]state.Registration, error) {
	live, err := s.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("redisstore: all registrations: %w", err)
	}
	from := "(" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	cmds := make([]*redis.StringSliceCmd, 0, len(live))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for srv := range live {
			cmds = append(cmds, p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.k.srvRegs(srv),
				Start: from, Stop: "+inf", ByScore: true}))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: all registrations: %w", err)
	}
	var keys []string
	for _, c := range cmds {
		for _, id := range c.Val() {
			keys = append(keys, s.k.reg(id))
		}
	}
	vals, err := s.mget(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("redisstore: all registrations: %w", err)
	}
	return s.decodeRegs(vals), nil
}

func (s *Store) decodeRegs(vals []string) []state.Registration {
	out := make([]state.Registration, 0, len(vals))
	now := time.Now()
	for _, v := range vals {
		var r state.Registration
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			s.log.Warn("skipping undecodable registration", "err", err)
			continue
		}
		if r.Expires.After(now) {
			out = append(out, r)
		}
	}
	return out
}
