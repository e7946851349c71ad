package blf

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/state"
)

// publish is the local side: ARI device state events and AMI snapshots go
// to the store. It owns the published cache (device -> last state stored).
func (m *Monitor) publish(ctx context.Context, amiSig <-chan struct{}) {
	published := map[string]string{}
	events := m.ari.Events()
	snapshotDue := true // at start
	var retry <-chan time.Time
	// A periodic snapshot repairs what no signal announced (e.g. a store
	// that lost data without the feed noticing); unchanged states cost no
	// event, as the store publishes only changes.
	var reconcile <-chan time.Time
	if m.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(m.cfg.ReconcileInterval)
		defer t.Stop()
		reconcile = t.C
	}
	for {
		if snapshotDue && retry == nil {
			if err := m.snapshot(ctx, published); err != nil {
				if ctx.Err() != nil {
					return
				}
				m.fail(causeSnapshot, "", err)
				retry = time.After(m.cfg.RetryInterval)
			} else {
				snapshotDue = false
				m.once.forget(causeSnapshot + "\x00")
			}
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil // client closed; keep serving snapshots until ctx ends
				continue
			}
			batch := m.collect(ev, events, published)
			if !m.publishBatch(ctx, batch, published) {
				snapshotDue = true // the store missed a change: replace all later
			}
		case <-m.ari.Connected():
			// Events of the gap are lost: re-read the devices, and have the
			// fan-out rewrite every Stasis: state (astdb replays stale ones).
			snapshotDue = true
			select {
			case m.rewrite <- struct{}{}:
			default:
			}
		case <-amiSig:
			snapshotDue = true
		case <-m.republish:
			// The store feed resynced: the store may have restarted empty
			// (our states and heartbeat gone) or missed our writes. Beat
			// first, so the others count what we store at once.
			m.beat(ctx)
			snapshotDue = true
		case <-reconcile:
			snapshotDue = true
		case <-retry:
			retry = nil
		}
	}
}

// change is one device state to publish.
type change struct {
	device, state string
	src           time.Time
}

// maxBatch bounds how many queued events one round publishes.
const maxBatch = 1024

// collect takes first and whatever else is already queued (a burst), drops
// what must not be published, and keeps only the latest state per device,
// in order of first appearance.
func (m *Monitor) collect(first ari.DeviceStateEvent, events <-chan ari.DeviceStateEvent, published map[string]string) []change {
	var batch []change
	at := map[string]int{}
	add := func(ev ari.DeviceStateEvent) {
		c, ok := m.accept(ev)
		if !ok {
			return
		}
		if i, dup := at[c.device]; dup {
			batch[i] = c
			return
		}
		at[c.device] = len(batch)
		batch = append(batch, c)
	}
	add(first)
	for range maxBatch - 1 {
		select {
		case ev, ok := <-events:
			if !ok {
				return m.unpublished(batch, published)
			}
			add(ev)
		default:
			return m.unpublished(batch, published)
		}
	}
	return m.unpublished(batch, published)
}

// unpublished drops changes the store already has.
func (m *Monitor) unpublished(batch []change, published map[string]string) []change {
	out := batch[:0]
	for _, c := range batch {
		if published[c.device] != c.state {
			out = append(out, c)
		}
	}
	return out
}

// accept filters one event: Stasis: echoes, unmappable devices and unknown
// states are not published.
func (m *Monitor) accept(ev ari.DeviceStateEvent) (change, bool) {
	if strings.HasPrefix(ev.Device, ari.StasisPrefix) {
		return change{}, false // our own writes echoing back (or another app's): never republish
	}
	if _, _, ok := m.mapping.Map(ev.Device); !ok {
		m.fail(causeUnmapped, ev.Device, fmt.Errorf("blf: device %q does not match devices %q", ev.Device, m.cfg.Devices))
		return change{}, false
	}
	if !KnownState(ev.State) {
		m.fail(causeUnknownState, ev.Device+" "+ev.State, fmt.Errorf("blf: device %q: unknown state %q", ev.Device, ev.State))
		return change{}, false
	}
	src := ev.Received
	if src.IsZero() {
		src = time.Now()
	}
	return change{device: ev.Device, state: ev.State, src: src}, true
}

// BatchDevices is the optional batch interface of a store (redisstore has
// it): a burst of changes is then stored in one call, one round trip,
// instead of one call per change.
type BatchDevices interface {
	PutDeviceStates(ctx context.Context, states []state.DeviceState) error
}

// publishBatch stores the changes (each device at most once per batch, so
// order per device holds): one change, as at low rates, in one call at
// once; a burst in one batch call if the store has it, else up to Workers
// calls at a time. false means a store call failed.
func (m *Monitor) publishBatch(ctx context.Context, batch []change, published map[string]string) bool {
	errs := make([]error, len(batch))
	done := make([]time.Time, len(batch))
	put := func(i int) {
		c := batch[i]
		cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
		errs[i] = m.store.PutDeviceState(cctx, state.DeviceState{Server: m.server, Device: c.device, State: c.state, Updated: c.src})
		cancel()
		done[i] = time.Now()
	}
	bs, batched := m.store.(BatchDevices)
	switch {
	case len(batch) == 1:
		put(0)
	case batched:
		// A store refuses a whole batch for one bad state: those fail
		// alone, as they would one by one.
		states := make([]state.DeviceState, 0, len(batch))
		in := make([]int, 0, len(batch))
		for i, c := range batch {
			d := state.DeviceState{Server: m.server, Device: c.device, State: c.state, Updated: c.src}
			if errs[i] = d.Validate(); errs[i] == nil {
				states, in = append(states, d), append(in, i)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
		err := bs.PutDeviceStates(cctx, states)
		cancel()
		now := time.Now()
		for _, i := range in {
			errs[i], done[i] = err, now
		}
	default:
		var wg sync.WaitGroup
		var next atomic.Int64
		for range min(m.cfg.Workers, len(batch)) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(batch); i = int(next.Add(1) - 1) {
					put(i)
				}
			})
		}
		wg.Wait()
	}
	ok := true
	for i, c := range batch {
		if err := errs[i]; err != nil {
			if ctx.Err() == nil {
				m.fail(causeStorePut, "", err, "device", c.device)
			}
			if m.ami == nil {
				published[c.device] = c.state // the retried snapshot stores the cache
			} else {
				delete(published, c.device)
			}
			ok = false
			continue
		}
		published[c.device] = c.state
		m.met.published.Inc()
		m.emit(hop{Server: m.server, Stage: "published", Name: c.device, State: c.state, Src: c.src, At: done[i]})
	}
	return ok
}

// snapshot replaces this server's device states in the store with AMI
// DeviceStateList (GET /ari/deviceStates lists only Stasis: devices).
// Without AMI it stores again what was published before (if anything).
func (m *Monitor) snapshot(ctx context.Context, published map[string]string) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	if m.ami == nil {
		return m.republishCache(cctx, published)
	}
	resp, list, err := m.ami.Action(cctx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "DeviceStateList"}}})
	if err != nil {
		return fmt.Errorf("blf: DeviceStateList: %w", err)
	}
	if r := resp.Get("Response"); !strings.EqualFold(r, "Success") {
		return fmt.Errorf("blf: DeviceStateList: %s: %s", r, resp.Get("Message"))
	}
	now := time.Now()
	states := make([]state.DeviceState, 0, len(list))
	fresh := make(map[string]string, len(list))
	for _, ev := range list {
		dev, st := ev.Get("Device"), ev.Get("State")
		if dev == "" || strings.HasPrefix(dev, ari.StasisPrefix) {
			continue
		}
		if _, _, ok := m.mapping.Map(dev); !ok {
			continue // Local/..., Custom:..., ...: not phones
		}
		if !KnownState(st) {
			m.fail(causeUnknownState, dev+" "+st, fmt.Errorf("blf: device %q: unknown state %q", dev, st))
			continue
		}
		states = append(states, state.DeviceState{Server: m.server, Device: dev, State: st, Updated: now})
		fresh[dev] = st
	}
	if err := m.store.ReplaceDeviceStates(cctx, m.server, states); err != nil {
		return fmt.Errorf("blf: storing snapshot: %w", err)
	}
	clear(published)
	for k, v := range fresh {
		published[k] = v
	}
	m.log.Debug("blf: snapshot stored", "devices", len(states))
	return nil
}

// republishCache stores the published cache again as this server's whole
// truth; with nothing published yet it leaves the store alone.
func (m *Monitor) republishCache(ctx context.Context, published map[string]string) error {
	if len(published) == 0 {
		return nil
	}
	now := time.Now()
	states := make([]state.DeviceState, 0, len(published))
	for dev, st := range published {
		states = append(states, state.DeviceState{Server: m.server, Device: dev, State: st, Updated: now})
	}
	if err := m.store.ReplaceDeviceStates(ctx, m.server, states); err != nil {
		return fmt.Errorf("blf: storing published states again: %w", err)
	}
	return nil
}
