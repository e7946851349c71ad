package ari

import (
	"maps"
	"strings"
	"sync"
	"time"
)

// Core is a minimal in-memory Backend for tests that need the simulator's
// real ARI handler without a whole simulated Asterisk: real device states,
// astdb-like Stasis: states and an event feed delivered outside its lock.
type Core struct {
	info Info

	mu      sync.Mutex
	eps     []Endpoint
	devices map[string]string // real devices, e.g. PJSIP/1001
	stasis  map[string]string // "Stasis:1001" -> state
	subs    map[int]func(Event)
	next    int

	// Applied, if set before the core serves, sees each Stasis: state as
	// the core stores it (where a benchmark's clock stops).
	Applied func(name, state string, at time.Time)
}

// NewCore returns a core with the given identity and endpoints (nil: none).
func NewCore(info Info, endpoints []Endpoint) *Core {
	return &Core{info: info, eps: endpoints, devices: map[string]string{}, stasis: map[string]string{},
		subs: map[int]func(Event){}}
}

// Info implements Backend.
func (c *Core) Info() Info { return c.info }

// Endpoints implements Backend.
func (c *Core) Endpoints() []Endpoint {
	c.mu.Lock() // the handler tests' fake changes endpoint states
	defer c.mu.Unlock()
	out := make([]Endpoint, len(c.eps))
	for i, e := range c.eps {
		e.ChannelIDs = []string{}
		out[i] = e
	}
	return out
}

// DeviceState implements Backend.
func (c *Core) DeviceState(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stasis[name]; ok {
		return st
	}
	if strings.HasPrefix(name, "Stasis:") {
		return "UNKNOWN"
	}
	if st, ok := c.devices[name]; ok {
		return st
	}
	return "INVALID"
}

// StasisStates implements Backend.
func (c *Core) StasisStates() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.stasis)
}

// SetStasisState implements Backend.
func (c *Core) SetStasisState(name, state string) error {
	c.mu.Lock()
	c.stasis[name] = state
	c.mu.Unlock()
	if c.Applied != nil {
		c.Applied(name, state, time.Now())
	}
	c.notify(name, state)
	return nil
}

// DeleteStasisState implements Backend.
func (c *Core) DeleteStasisState(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.stasis, name)
	return nil
}

// Subscribe implements Backend.
func (c *Core) Subscribe(fn func(Event)) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.subs[id] = fn
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.subs, id)
	}
}

// Raise sets a real device's state, as a call or registration would, and
// sends its DeviceStateChanged.
func (c *Core) Raise(device, state string) {
	c.mu.Lock()
	c.devices[device] = state
	c.mu.Unlock()
	c.notify(device, state)
}

// Stasis returns a Stasis: state as the core has it ("" if unset).
func (c *Core) Stasis(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stasis[name]
}

// Seed stores Stasis: states without events, as astdb replays them at start.
func (c *Core) Seed(states map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.Copy(c.stasis, states)
}

func (c *Core) notify(device, state string) {
	c.mu.Lock()
	subs := make([]func(Event), 0, len(c.subs))
	for _, fn := range c.subs {
		subs = append(subs, fn)
	}
	c.mu.Unlock()
	ev := Event{Kind: "DeviceStateChanged", Time: time.Now(), Device: device, State: state}
	for _, fn := range subs {
		fn(ev)
	}
}
