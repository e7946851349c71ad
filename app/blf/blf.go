// Package blf owns the Busy Lamp Monitor: every real device state change of
// the local Asterisk (PJSIP/, SIP/, IAX2/ ...) goes to the shared store, and
// every server sets Stasis:<name> on its own Asterisk to the aggregate of
// that device on all the OTHER live servers, so hints like
// PJSIP/1001&Stasis:1001 light up wherever the phone is.
//
// Data flows one way: ARI events and AMI snapshots -> store (publisher);
// store feed and heartbeats -> desired Stasis: states (fan-out) -> ARI
// writes (worker pool). Stasis: events (the echoes of our own writes) are
// never published, and writes depend only on the store, so nothing loops.
package blf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/state"
)

// Store is what the monitor needs of the shared state.
type Store interface {
	state.Devices
	state.Cluster
}

// Deps are the monitor's collaborators.
type Deps struct {
	Store   Store
	ARI     ari.Client
	AMI     ami.Conn // for DeviceStateList snapshots; nil disables them
	Server  string   // this server's name (Asterisk systemname)
	Log     *slog.Logger
	Metrics prometheus.Registerer // nil: metrics are kept but not registered
}

// Monitor is one server's Busy Lamp Monitor.
type Monitor struct {
	cfg     Config
	mapping *Mapping
	store   Store
	ari     ari.Client
	ami     ami.Conn
	server  string
	log     *slog.Logger
	met     *metrics
	once    *logOnce
	w       *writer

	rewrite   chan struct{} // publisher -> fan-out: ARI (re)connected, rewrite all
	republish chan struct{} // fan-out -> publisher: the store feed resynced, store all again

	// trace, if set (tests, benchmarks), sees every hop of a change.
	trace func(hop)
}

// hop is one stage of a change's way through the cluster; Src (the time
// the origin server read the ARI event) identifies the change.
type hop struct {
	Server string // where the hop happened
	Stage  string // "published", "feed", "written"
	Name   string // device (published) or Stasis: name (feed, written)
	State  string
	Src    time.Time
	At     time.Time
}

// New checks cfg and deps and builds a monitor; Run starts it.
func New(cfg Config, deps Deps) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Store == nil:
		return nil, errors.New("blf: store required")
	case deps.ARI == nil:
		return nil, errors.New("blf: ARI client required")
	case deps.Server == "":
		return nil, errors.New("blf: server name required")
	}
	m, err := NewMapping(cfg.Devices, cfg.Stasis, cfg.Extension)
	if err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mon := &Monitor{
		cfg: cfg, mapping: m, store: deps.Store, ari: deps.ARI, ami: deps.AMI,
		server: deps.Server, log: log.With("job", "blf"), met: newMetrics(deps.Metrics),
		once: newLogOnce(), rewrite: make(chan struct{}, 1), republish: make(chan struct{}, 1),
	}
	mon.w = newWriter(mon)
	return mon, nil
}

// Health reports whether the lamps can be kept up to date (for /healthz).
func (m *Monitor) Health() error {
	if s := m.ari.Status(); !s.Connected {
		if s.Err == "" {
			s.Err = "ARI: not connected"
		}
		return fmt.Errorf("blf: %s", s.Err)
	}
	return nil
}

// Lamps is the package-level Lamps with this monitor's store and mapping.
func (m *Monitor) Lamps(ctx context.Context) ([]Lamp, error) {
	return Lamps(ctx, m.store, m.mapping)
}

// Run works until ctx ends; it returns nil then. Failures of Asterisk or
// the store are logged, counted and retried, never returned.
func (m *Monitor) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	amiSig := make(chan struct{}, 1)
	if m.ami != nil {
		events, cancel := m.ami.Subscribe(64)
		g.Go(func() error {
			defer cancel()
			m.watchAMI(ctx, events, amiSig)
			return nil
		})
	}
	// Beat once before publishing, so the others count our states at once.
	m.beat(ctx)
	g.Go(func() error { m.heartbeat(ctx); return nil })
	g.Go(func() error { m.publish(ctx, amiSig); return nil })
	g.Go(func() error { m.fanout(ctx); return nil })
	for i := range m.w.queues {
		g.Go(func() error { m.w.work(ctx, i); return nil })
	}
	return g.Wait()
}

// watchAMI drains the AMI subscription fast (a full one drops events) and
// signals each (re)login, after which the snapshot is retaken.
func (m *Monitor) watchAMI(ctx context.Context, events <-chan ami.Message, sig chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-events:
			if !ok {
				return
			}
			if msg.Event() == ami.EventConnected {
				select {
				case sig <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (m *Monitor) heartbeat(ctx context.Context) {
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.beat(ctx)
		}
	}
}

func (m *Monitor) beat(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	err := m.store.Heartbeat(cctx, m.server, m.cfg.HeartbeatTTL)
	cancel()
	if err != nil && ctx.Err() == nil {
		m.fail(causeHeartbeat, "", err)
	} else if err == nil {
		m.once.forget(causeHeartbeat + "\x00")
	}
}

// fail counts a problem and logs it once per (cause, key).
func (m *Monitor) fail(cause, key string, err error, attrs ...any) {
	m.met.errors.WithLabelValues(cause).Inc()
	if m.once.first(cause + "\x00" + key) {
		m.log.Warn("blf: "+cause, append(attrs, "key", key, "error", err)...)
	} else {
		m.log.Debug("blf: "+cause, append(attrs, "key", key, "error", err)...)
	}
}

func (m *Monitor) emit(h hop) {
	if m.trace != nil {
		m.trace(h)
	}
}

// logOnce remembers which problems were logged; it forgets nothing but
// stops remembering past a bound, so a flood cannot grow memory.
type logOnce struct {
	mu   sync.Mutex
	seen map[string]bool
}

func newLogOnce() *logOnce { return &logOnce{seen: map[string]bool{}} }

func (l *logOnce) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] {
		return false
	}
	if len(l.seen) >= 4096 {
		return false
	}
	l.seen[key] = true
	return true
}

// forget lets a problem be logged again (after it went away).
func (l *logOnce) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, key)
}
