package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
)

// heartbeatScript: KEYS heartbeat, servers; ARGV ttl ms, beat ms, server,
// heartbeat key prefix, registration feed channel, expiry ms. The heartbeat
// is a key with an expiry, so a dead server disappears by itself; the set
// only lists names to look at, and names whose heartbeat is gone are dropped
// from it here. The beat (ServerAlive) and the dropped names (ServerDown)
// go to the registration feed (regfeed.go).
var heartbeatScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
local hb = ARGV[3] .. '\0' .. ARGV[6]
redis.call('PUBLISH', ARGV[5], 'H' .. #hb .. ':' .. hb)
local down = {'D'}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. s) == 0 then
    redis.call('SREM', KEYS[2], s)
    down[#down + 1] = #s .. ':' .. s
  end
end
if #down > 1 then redis.call('PUBLISH', ARGV[5], table.concat(down)) end
return 1`)

// serversScript: KEYS servers; ARGV heartbeat key prefix. Returns
// server, beat ms pairs of the live servers.
var serversScript = redis.NewScript(`
local out = {}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. s)
  if v then out[#out+1] = s; out[#out+1] = v end
end
return out`)

// Heartbeat marks server alive for ttl.
func (s *Store) Heartbeat(ctx context.Context, server string, ttl time.Duration) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("redisstore: heartbeat %s: ttl %v must be positive", server, ttl)
	}
	ms, now := max(ttl.Milliseconds(), 1), time.Now().UnixMilli()
	err := heartbeatScript.Run(ctx, s.rdb, []string{s.k.heartbeat(server), s.k.servers()},
		ms, now, server, s.k.heartbeat(""), s.k.regFeed(), now+ms).Err()
	if err != nil {
		return fmt.Errorf("redisstore: heartbeat %s: %w", server, err)
	}
	return nil
}

// Servers returns the live servers and when each last beat.
func (s *Store) Servers(ctx context.Context) (map[string]time.Time, error) {
	vals, err := serversScript.Run(ctx, s.rdb, []string{s.k.servers()}, s.k.heartbeat("")).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: servers: %w", err)
	}
	out := make(map[string]time.Time, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		ms, err := strconv.ParseInt(vals[i+1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redisstore: servers: heartbeat of %s is %q, not a time", vals[i], vals[i+1])
		}
		out[vals[i]] = time.UnixMilli(ms)
	}
	return out, nil
}
