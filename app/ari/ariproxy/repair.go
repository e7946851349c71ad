package ariproxy

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/CyCoreSystems/ari-proxy/v5/proxy"
	ariv5 "github.com/CyCoreSystems/ari/v5"
	"golang.org/x/sync/errgroup"

	"github.com/asterisksupport/doorman/app/ari"
)

// Event repair. ari-proxy v5.3.1 reads Asterisk's events through an ari/v5
// bus subscription of 100 events that drops silently when full, so a burst
// of device state changes (measured: 200 at once, 91 lost) never reaches
// NATS. Nothing tells the client, so it re-reads the state of every device
// it knows (those it saw, plus every endpoint) after each burst, after
// each (re)connect and every RepairInterval, and emits an event for each
// state that differs from the last one it delivered.

// known tracks the last state delivered per real (non-Stasis:) device.
type known struct {
	mu    sync.Mutex
	dev   map[string]devState
	burst int // events since the last burst check
}

type devState struct {
	state string
	seq   uint64 // bumped by every delivered event; a repair read made before loses
}

func (k *known) seen(device, state string) {
	k.mu.Lock()
	d := k.dev[device]
	k.dev[device] = devState{state: state, seq: d.seq + 1}
	k.mu.Unlock()
}

// arrived counts every event of the node, the echoes of Stasis: writes
// included: they fill ari-proxy's buffer too.
func (k *known) arrived() {
	k.mu.Lock()
	k.burst++
	k.mu.Unlock()
}

// maintain repairs after a burst has ended, after each fresh connect and
// periodically, and reads back writes that may have arrived late.
func (c *Client) maintain(ctx context.Context) {
	tick := time.NewTicker(c.cfg.BurstWindow)
	defer tick.Stop()
	var periodic <-chan time.Time
	if c.cfg.RepairInterval > 0 && c.cfg.BurstEvents > 0 {
		t := time.NewTicker(c.cfg.RepairInterval)
		defer t.Stop()
		periodic = t.C
	}
	inBurst := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.repairNow:
			if c.cfg.BurstEvents <= 0 {
				continue
			}
		case <-periodic:
		case <-tick.C:
			if c.Status().Connected {
				c.checkLate(ctx)
			}
			c.known.mu.Lock()
			n := c.known.burst
			c.known.burst = 0
			c.known.mu.Unlock()
			if c.cfg.BurstEvents <= 0 {
				continue
			}
			if n >= c.cfg.BurstEvents {
				inBurst = true
				continue
			}
			if !inBurst {
				continue
			}
			inBurst = false
		}
		if !c.Status().Connected {
			continue
		}
		before := c.repaired.Load()
		if n, err := c.repair(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("ari-proxy: device state repair failed", "node", c.Node(), "error", err)
		} else if lost := c.repaired.Load() - before; lost > 0 {
			c.log.Info("ari-proxy: device state changes found by repair (events lost on the way)", "node", c.Node(), "lost", lost, "emitted", n)
		} else {
			c.log.Debug("ari-proxy: device states re-read", "node", c.Node(), "emitted", n)
		}
	}
}

// repair re-reads every known device and endpoint; it returns how many
// events it emitted.
func (c *Client) repair(ctx context.Context) (int, error) {
	node := c.Node()
	resp, err := c.request(ctx, "get", node, &proxy.Request{Kind: "EndpointList", Key: ariv5.NewKey(ariv5.EndpointKey, "")})
	if err != nil {
		return 0, err
	}
	names := map[string]uint64{}
	c.known.mu.Lock()
	for name, d := range c.known.dev {
		names[name] = d.seq
	}
	c.known.mu.Unlock()
	for _, k := range resp.Keys {
		if k != nil && k.ID != "" {
			if _, ok := names[k.ID]; !ok {
				names[k.ID] = 0
			}
		}
	}
	var mu sync.Mutex
	emitted := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.ListConcurrency)
	for name, seq := range names {
		g.Go(func() error {
			r, err := c.request(gctx, "data", node, &proxy.Request{Kind: "DeviceStateData", Key: deviceKey(name)})
			if err != nil {
				return err
			}
			if r.Data == nil || r.Data.DeviceState == nil || r.Data.DeviceState.State == "" {
				return nil
			}
			st := r.Data.DeviceState.State
			c.known.mu.Lock()
			d, ok := c.known.dev[name]
			stale := d.seq != seq // an event came meanwhile: it is newer than our read
			if stale || (ok && d.state == st) {
				c.known.mu.Unlock()
				return nil
			}
			c.known.dev[name] = devState{state: st, seq: d.seq + 1}
			c.known.mu.Unlock()
			now := time.Now()
			c.deliver(ari.DeviceStateEvent{Node: node, Device: name, State: st, Received: now})
			if ok {
				c.repaired.Add(1) // not a first sighting: a change was lost
			}
			mu.Lock()
			emitted++
			mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	return emitted, err
}

func isStasis(device string) bool { return strings.HasPrefix(device, ari.StasisPrefix) }
