package blf

import (
	"context"
	"fmt"
	"strings"
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
			if !m.publishEvent(ctx, ev, published) {
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

// publishEvent stores one event; false means the store call failed.
func (m *Monitor) publishEvent(ctx context.Context, ev ari.DeviceStateEvent, published map[string]string) bool {
	if strings.HasPrefix(ev.Device, ari.StasisPrefix) {
		return true // our own writes echoing back (or another app's): never republish
	}
	if _, _, ok := m.mapping.Map(ev.Device); !ok {
		m.fail(causeUnmapped, ev.Device, fmt.Errorf("blf: device %q does not match devices %q", ev.Device, m.cfg.Devices))
		return true
	}
	if !KnownState(ev.State) {
		m.fail(causeUnknownState, ev.Device+" "+ev.State, fmt.Errorf("blf: device %q: unknown state %q", ev.Device, ev.State))
		return true
	}
	if published[ev.Device] == ev.State {
		return true
	}
	src := ev.Received
	if src.IsZero() {
		src = time.Now()
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	err := m.store.PutDeviceState(cctx, state.DeviceState{Server: m.server, Device: ev.Device, State: ev.State, Updated: src})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			m.fail(causeStorePut, "", err, "device", ev.Device)
		}
		if m.ami == nil {
			published[ev.Device] = ev.State // the retried snapshot stores the cache
		} else {
			delete(published, ev.Device)
		}
		return false
	}
	published[ev.Device] = ev.State
	m.met.published.Inc()
	m.emit(Hop{Server: m.server, Stage: "published", Name: ev.Device, State: ev.State, Src: src, At: time.Now()})
	return true
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
