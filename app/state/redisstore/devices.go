package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state"
)

// Device states live in one hash per server: field = device, value =
// "STATE|updated-unix-nanos", so the scripts compare states without JSON.

// putDeviceScript: KEYS hash; ARGV device, state, value, channel, event.
// Stores and publishes only when the state differs: compare and set in one
// step, so two writers never both publish the same change.
var putDeviceScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local i = string.find(old, '|', 1, true)
  if i and string.sub(old, 1, i - 1) == ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1`)

// putDevicesScript is putDeviceScript over several devices, one feed
// message per changed one: KEYS hashes; ARGV channel, then per device:
// device, state, value, event. Returns how many were published.
var putDevicesScript = redis.NewScript(`
local n = 0
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 4
  local old = redis.call('HGET', KEYS[i], ARGV[a])
  local same = false
  if old then
    local j = string.find(old, '|', 1, true)
    same = j and string.sub(old, 1, j - 1) == ARGV[a + 1]
  end
  if not same then
    redis.call('HSET', KEYS[i], ARGV[a], ARGV[a + 2])
    redis.call('PUBLISH', ARGV[1], ARGV[a + 3])
    n = n + 1
  end
end
return n`)

// replaceDevicesScript: KEYS hash; ARGV channel, server, then per device:
// device, state, value, event. Publishes an Added event per changed device
// and a Removed event per device that is gone.
var replaceDevicesScript = redis.NewScript(`
local old = {}
local cur = redis.call('HGETALL', KEYS[1])
for i = 1, #cur, 2 do old[cur[i]] = cur[i + 1] end
redis.call('DEL', KEYS[1])
local n = 0
for i = 3, #ARGV, 4 do
  local dev, st, val, ev = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local o = old[dev]
  old[dev] = nil
  local same = false
  if o then
    local j = string.find(o, '|', 1, true)
    same = j and string.sub(o, 1, j - 1) == st
  end
  if same then
    redis.call('HSET', KEYS[1], dev, o)
  else
    redis.call('HSET', KEYS[1], dev, val)
    redis.call('PUBLISH', ARGV[1], ev)
    n = n + 1
  end
end
for dev, _ in pairs(old) do
  redis.call('PUBLISH', ARGV[1], cjson.encode({k = 1, s = {server = ARGV[2], device = dev}}))
  n = n + 1
end
return n`)

// wireDeviceEvent is a device feed message.
type wireDeviceEvent struct {
	Kind  state.EventKind   `json:"k"`
	State state.DeviceState `json:"s"`
}

func deviceValue(d state.DeviceState) string {
	return d.State + "|" + strconv.FormatInt(d.Updated.UnixNano(), 10)
}

func parseDeviceValue(server, device, v string) (state.DeviceState, error) {
	st, ns, ok := strings.Cut(v, "|")
	if !ok {
		return state.DeviceState{}, fmt.Errorf("device %s of %s: stored value %q has no '|'", device, server, v)
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return state.DeviceState{}, fmt.Errorf("device %s of %s: stored time %q: %w", device, server, ns, err)
	}
	return state.DeviceState{Server: server, Device: device, State: st, Updated: time.Unix(0, n)}, nil
}

// PutDeviceState stores d and publishes it if its state changed.
func (s *Store) PutDeviceState(ctx context.Context, d state.DeviceState) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("redisstore: put device state: %w", err)
	}
	if d.Updated.IsZero() {
		d.Updated = time.Now()
	}
	ev, err := json.Marshal(wireDeviceEvent{Kind: state.Added, State: d})
	if err != nil {
		return fmt.Errorf("redisstore: put device state %s: %w", d.Device, err)
	}
	err = putDeviceScript.Run(ctx, s.rdb, []string{s.k.devices(d.Server)},
		d.Device, d.State, deviceValue(d), s.k.deviceFeed(), ev).Err()
	if err != nil {
		return fmt.Errorf("redisstore: put device state %s: %w", d.Device, err)
	}
	return nil
}

// PutDeviceStates does PutDeviceState for each state, in order, in one
// script call (one round trip) per batchMax states: a burst of changes
// costs Redis and the caller one call instead of one each. Nothing is
// written if a state is invalid; on a store error the states of earlier
// calls stay stored (and published).
func (s *Store) PutDeviceStates(ctx context.Context, states []state.DeviceState) error {
	now := time.Now()
	keys := make([]string, 0, len(states))
	args := make([]any, 0, 4*len(states))
	for _, d := range states {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("redisstore: put device states: %w", err)
		}
		if d.Updated.IsZero() {
			d.Updated = now
		}
		ev, err := json.Marshal(wireDeviceEvent{Kind: state.Added, State: d})
		if err != nil {
			return fmt.Errorf("redisstore: put device state %s: %w", d.Device, err)
		}
		keys = append(keys, s.k.devices(d.Server))
		args = append(args, d.Device, d.State, deviceValue(d), ev)
	}
	feed := s.k.deviceFeed()
	for len(keys) > 0 {
		n := min(len(keys), batchMax)
		err := putDevicesScript.Run(ctx, s.rdb, keys[:n], append([]any{feed}, args[:4*n]...)...).Err()
		if err != nil {
			return fmt.Errorf("redisstore: put %d device states: %w", len(keys), err)
		}
		keys, args = keys[n:], args[4*n:]
	}
	return nil
}

// ReplaceDeviceStates makes states the whole truth for server; watchers
// get an event for each device that changed or disappeared.
func (s *Store) ReplaceDeviceStates(ctx context.Context, server string, states []state.DeviceState) error {
	if err := state.CheckName("server", server); err != nil {
		return fmt.Errorf("redisstore: replace device states: %w", err)
	}
	now := time.Now()
	args := make([]any, 0, 2+4*len(states))
	args = append(args, s.k.deviceFeed(), server)
	for _, d := range states {
		d.Server = server
		if d.Updated.IsZero() {
			d.Updated = now
		}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("redisstore: replace device states of %s: %w", server, err)
		}
		ev, err := json.Marshal(wireDeviceEvent{Kind: state.Added, State: d})
		if err != nil {
			return fmt.Errorf("redisstore: replace device states of %s: %w", server, err)
		}
		args = append(args, d.Device, d.State, deviceValue(d), ev)
	}
	if err := replaceDevicesScript.Run(ctx, s.rdb, []string{s.k.devices(server)}, args...).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("redisstore: replace device states of %s: %w", server, err)
	}
	return nil
}

// DeviceStates returns every stored state of the live servers.
func (s *Store) DeviceStates(ctx context.Context) ([]state.DeviceState, error) {
	live, err := s.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("redisstore: device states: %w", err)
	}
	names := make([]string, 0, len(live))
	cmds := make([]*redis.MapStringStringCmd, 0, len(live))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for srv := range live {
			names = append(names, srv)
			cmds = append(cmds, p.HGetAll(ctx, s.k.devices(srv)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: device states: %w", err)
	}
	var out []state.DeviceState
	for i, c := range cmds {
		for dev, v := range c.Val() {
			d, err := parseDeviceValue(names[i], dev, v)
			if err != nil {
				s.log.Warn("skipping undecodable device state", "err", err)
				continue
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// WatchDeviceStates streams device changes of every agent until ctx ends,
// with a Resync after each reconnect.
func (s *Store) WatchDeviceStates(ctx context.Context) (<-chan state.DeviceEvent, error) {
	decode := func(payload string) ([]state.DeviceEvent, error) {
		var w wireDeviceEvent
		if err := json.Unmarshal([]byte(payload), &w); err != nil {
			return nil, err
		}
		return []state.DeviceEvent{{Kind: w.Kind, State: w.State}}, nil
	}
	ch, err := watch(ctx, s, s.k.deviceFeed(), decode, state.DeviceEvent{Kind: state.Resync})
	if err != nil {
		return nil, fmt.Errorf("redisstore: watch device states: %w", err)
	}
	return ch, nil
}
