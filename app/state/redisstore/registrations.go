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

// regPutLua is shared by put and replace: stores one registration.
// Uses tag, id, aor, server, exp, js, now.
const regPutLua = `
redis.call('SET', tag .. 'reg:' .. id, js, 'PXAT', exp)
for _, ix in ipairs({tag .. 'aor:' .. aor, tag .. 'sreg:' .. server}) do
  redis.call('ZADD', ix, exp, id)
  redis.call('ZREMRANGEBYSCORE', ix, '-inf', '(' .. now)
  local t = redis.call('PEXPIRETIME', ix)
  if t == -1 or t < tonumber(exp) then redis.call('PEXPIREAT', ix, exp) end
end
`

// putRegScript: ARGV tag, server, aor, contact, expiry ms, json, now ms.
// KEYS name the three keys touched, for Cluster routing and ACL checks.
var putRegScript = redis.NewScript(`
local tag, server, aor, contact, exp, js, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local id = server .. '\0' .. aor .. '\0' .. contact
` + regPutLua + `
return 1`)

// delRegScript: KEYS reg, aor index, server index; ARGV id.
var delRegScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return n`)

// replaceRegsScript: KEYS server index; ARGV tag, server, now, then per
// registration: aor, contact, expiry ms, json. Removes every registration
// the server had, then stores the new ones, in one atomic step.
var replaceRegsScript = redis.NewScript(`
local tag, server, now = ARGV[1], ARGV[2], ARGV[3]
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('DEL', tag .. 'reg:' .. id)
  local a = string.find(id, '\0', 1, true)
  local b = string.find(id, '\0', a + 1, true)
  redis.call('ZREM', tag .. 'aor:' .. string.sub(id, a + 1, b - 1), id)
end
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 4 do
  local aor, contact, exp, js = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local id = server .. '\0' .. aor .. '\0' .. contact
` + regPutLua + `
end
return 1`)

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
		return fmt.Errorf("redisstore: put registration: %w", err)
	}
	now := time.Now()
	if !r.Expires.After(now) {
		return s.DeleteRegistration(ctx, r.Server, r.AOR, r.Contact)
	}
	js, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("redisstore: put registration %s: %w", r.AOR, err)
	}
	id := regID(r.Server, r.AOR, r.Contact)
	err = putRegScript.Run(ctx, s.rdb,
		[]string{s.k.reg(id), s.k.aor(r.AOR), s.k.srvRegs(r.Server)},
		s.k.tag, r.Server, r.AOR, r.Contact, r.Expires.UnixMilli(), js, now.UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("redisstore: put registration %s: %w", r.AOR, err)
	}
	return nil
}

// DeleteRegistration removes one contact.
func (s *Store) DeleteRegistration(ctx context.Context, server, aor, contact string) error {
	if err := (state.Registration{Server: server, AOR: aor, Contact: contact, Expires: time.Unix(1, 0)}).Validate(); err != nil {
		return fmt.Errorf("redisstore: delete registration: %w", err)
	}
	id := regID(server, aor, contact)
	err := delRegScript.Run(ctx, s.rdb, []string{s.k.reg(id), s.k.aor(aor), s.k.srvRegs(server)}, id).Err()
	if err != nil {
		return fmt.Errorf("redisstore: delete registration %s: %w", aor, err)
	}
	return nil
}

// ReplaceRegistrations makes regs the whole truth for server, atomically.
// Each registration's Server is set to server; expired ones are left out.
func (s *Store) ReplaceRegistrations(ctx context.Context, server string, regs []state.Registration) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("redisstore: replace registrations: %w", err)
	}
	now := time.Now()
	args := make([]any, 0, 3+4*len(regs))
	args = append(args, s.k.tag, server, now.UnixMilli())
	for _, r := range regs {
		r.Server = server
		if err := r.Validate(); err != nil {
			return fmt.Errorf("redisstore: replace registrations of %s: %w", server, err)
		}
		if !r.Expires.After(now) {
			continue
		}
		js, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("redisstore: replace registrations of %s: %w", server, err)
		}
		args = append(args, r.AOR, r.Contact, r.Expires.UnixMilli(), js)
	}
	err := replaceRegsScript.Run(ctx, s.rdb, []string{s.k.srvRegs(server)}, args...).Err()
	if err != nil {
		return fmt.Errorf("redisstore: replace registrations of %s: %w", server, err)
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
