// Package ariproxy owns doorman's ari-proxy transport: it reaches an
// Asterisk server's ARI through a CyCoreSystems ari-proxy server over NATS,
// and implements the narrow ari.Client for one node (Asterisk entity id).
//
// It speaks ari-proxy v5.3.1's wire protocol (the proxy package's Request
// and Response types, ari/v5 keys, subjects ari.<class>.<app>.<node>) over
// its own NATS connection instead of ari-proxy's client package, whose
// traps doorman cannot work around from outside: its NATS connection gives
// up after 60 reconnects and its WithNATS option sends requests with a zero
// timeout; requests take no context and are logged at Error level; it finds
// nodes only by announcement (every minute, or after a ping); its event
// bus blocks the NATS reader once 10 events are queued. Here every request
// names its node (never a broadcast), each attempt is bounded by
// RequestTimeout (500 ms, as ari-proxy's client) and retried on timeout,
// the NATS connection reconnects forever, and every (re)connect or
// Asterisk restart re-makes the deviceState: subscription and is signalled
// on Connected.
package ariproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/CyCoreSystems/ari-proxy/v5/proxy"
	ariv5 "github.com/CyCoreSystems/ari/v5"
	"github.com/nats-io/nats.go"

	"github.com/asterisksupport/doorman/app/ari"
)

// Client is the ari.Client of one node reached through ari-proxy.
type Client struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	events chan ari.DeviceStateEvent
	signal chan struct{}
	kick   chan struct{} // run loop: check now (NATS back, node announced)
	known  known
	late   lateWrites
	// repairNow asks repairLoop for a repair (after each fresh connect).
	repairNow chan struct{}
	cancel    context.CancelFunc
	done      chan struct{}

	node atomic.Pointer[string] // bound entity id ("" until resolved)

	sendMu sync.RWMutex // guards events against close while the NATS callback sends
	closed bool

	mu      sync.Mutex
	status  ari.Status
	everUp  bool
	started time.Time // the node's Asterisk startup_time at the last check
	natsGap bool      // NATS dropped since the last successful check: events lost

	dropped  atomic.Int64
	lastDrop atomic.Int64
	repaired atomic.Int64
}

var _ ari.Client = (*Client)(nil)

// New connects to NATS (retrying in the background if it is down) and
// returns a client bound to cfg.Node, or to the node whose systemname is
// cfg.SystemName once found. It fails only on a bad config.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Client{
		cfg:    cfg,
		log:    log,
		events: make(chan ari.DeviceStateEvent, cfg.EventBuffer),
		signal: make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
		known:  known{dev: map[string]devState{}},
		late:   lateWrites{names: map[string]*lateName{}},

		repairNow: make(chan struct{}, 1),
		cancel:    cancel,
		done:      make(chan struct{}),
		status:    ari.Status{Since: time.Now(), Err: "ari-proxy: connecting"},
	}
	node := cfg.Node
	c.node.Store(&node)
	nc, err := nats.Connect(cfg.NATSURL,
		nats.Name("doorman"),
		nats.RetryOnFailedConnect(true), // NATS down at start: keep trying
		nats.MaxReconnects(-1),          // and never give up later
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(10*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { c.natsDown(err) }),
		nats.ReconnectHandler(func(*nats.Conn) { c.log.Info("ari-proxy: NATS reconnected"); c.poke() }),
		nats.ConnectHandler(func(*nats.Conn) { c.poke() }),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("ariproxy: NATS %s: %w", redactURL(cfg.NATSURL), err)
	}
	c.nc = nc
	// Announcements (every minute, or after our ping) say a node's proxy
	// is up: check at once rather than at the next retry.
	if _, err := nc.Subscribe(proxy.AnnouncementSubject(cfg.Prefix), c.onAnnounce); err != nil {
		nc.Close()
		cancel()
		return nil, fmt.Errorf("ariproxy: subscribing to announcements: %w", err)
	}
	if node != "" {
		if err := c.subscribeEvents(node); err != nil {
			nc.Close()
			cancel()
			return nil, err
		}
	}
	go c.run(ctx)
	go c.maintain(ctx)
	return c, nil
}

// subscribeEvents listens to the node's events only (ari-proxy publishes
// each node's on <prefix>event.<app>.<node>); nats.go renews it after
// every reconnect.
func (c *Client) subscribeEvents(node string) error {
	if _, err := c.nc.Subscribe(c.cfg.Prefix+"event."+c.cfg.Application+"."+node, c.onEvent); err != nil {
		return fmt.Errorf("ariproxy: subscribing to events of %s: %w", node, err)
	}
	return nil
}

// Node returns the bound entity id ("" while it is being looked up).
func (c *Client) Node() string { return *c.node.Load() }

// Repaired counts the changes of known devices that only a repair found:
// events ari-proxy lost (see repair.go).
func (c *Client) Repaired() int64 { return c.repaired.Load() }

// Events implements ari.Client.
func (c *Client) Events() <-chan ari.DeviceStateEvent { return c.events }

// Connected implements ari.Client.
func (c *Client) Connected() <-chan struct{} { return c.signal }

// Status implements ari.Client.
func (c *Client) Status() ari.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Dropped = c.dropped.Load()
	return s
}

// Close implements ari.Client: it stops the client, closes NATS and Events.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

func (c *Client) notify() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

func (c *Client) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Client) natsDown(err error) {
	msg := "ari-proxy: NATS disconnected"
	if err != nil {
		msg += ": " + err.Error()
	}
	c.setDown(msg)
	c.mu.Lock()
	c.natsGap = true
	c.mu.Unlock()
}

func (c *Client) onAnnounce(m *nats.Msg) {
	var a proxy.Announcement
	if json.Unmarshal(m.Data, &a) != nil || a.Application != c.cfg.Application {
		return
	}
	if n := c.Node(); n == "" || n == a.Node {
		c.poke()
	}
}

// dvEvent is the part of an ari/v5 event, as ari-proxy publishes it, that
// doorman reads. Decoding it directly (not ari.DecodeEvent) skips the
// other event types cheaply and survives an odd timestamp.
type dvEvent struct {
	Type        string `json:"type"`
	Node        string `json:"asterisk_id"`
	Timestamp   string `json:"timestamp"`
	DeviceState struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"device_state"`
}

func (c *Client) onEvent(m *nats.Msg) {
	now := time.Now()
	var e dvEvent
	if err := json.Unmarshal(m.Data, &e); err != nil {
		c.log.Warn("ari-proxy: undecodable event", "subject", m.Subject, "error", err, "bytes", len(m.Data))
		return
	}
	node := c.Node()
	if e.Node == "" { // older proxies: the subject's last token is the node
		e.Node = m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	}
	if node == "" || e.Node != node {
		return
	}
	c.known.arrived()
	if e.Type != ariv5.Events.DeviceStateChanged {
		return
	}
	ts, _ := time.Parse(ariv5.DateFormat, e.Timestamp)
	if !isStasis(e.DeviceState.Name) {
		c.known.seen(e.DeviceState.Name, e.DeviceState.State)
	}
	c.deliver(ari.DeviceStateEvent{Node: e.Node, Device: e.DeviceState.Name, State: e.DeviceState.State, Time: ts, Received: now})
}

// deliver hands an event to the consumer without ever blocking: a full
// buffer counts a drop and asks for a resync on Connected.
func (c *Client) deliver(ev ari.DeviceStateEvent) {
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return
	}
	select {
	case c.events <- ev:
	default:
		d := c.dropped.Add(1)
		now := ev.Received
		if last := c.lastDrop.Load(); now.UnixNano()-last > int64(10*time.Second) && c.lastDrop.CompareAndSwap(last, now.UnixNano()) {
			c.log.Warn("ari-proxy: consumer too slow, device state events dropped; asking for a resync", "dropped_total", d)
		}
		c.notify()
	}
}

// run keeps the node checked: while down it retries every RetryInterval
// (pinging the proxies so they announce themselves), while up it re-checks
// every CheckInterval.
func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	defer func() {
		c.nc.Close()
		c.sendMu.Lock()
		c.closed = true
		close(c.events)
		c.sendMu.Unlock()
		c.mu.Lock()
		c.status.Connected, c.status.Err, c.status.Since = false, "ari-proxy: closed", time.Now()
		c.mu.Unlock()
	}()
	for {
		wait := c.cfg.RetryInterval
		if err := c.check(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.setDown(describe(err))
			_ = c.nc.Publish(proxy.PingSubject(c.cfg.Prefix), []byte("{}"))
		} else {
			wait = c.cfg.CheckInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// check resolves the node, reads its identity and re-makes the
// deviceState: subscription (idempotent). It signals Connected after a
// (re)connect, a NATS gap, or an Asterisk restart (astdb replays stale
// Stasis: states, and the subscription was lost).
func (c *Client) check(ctx context.Context) error {
	if !c.nc.IsConnected() {
		return ErrNATSDown
	}
	c.mu.Lock()
	gap := c.natsGap
	c.natsGap = false
	c.mu.Unlock()
	node := c.Node()
	if node == "" {
		n, err := c.resolve(ctx)
		if err != nil {
			return err
		}
		if err := c.subscribeEvents(n); err != nil {
			return err
		}
		node = n
		c.node.Store(&node)
	}
	info, err := c.info(ctx, node)
	if err != nil {
		c.mu.Lock()
		c.natsGap = c.natsGap || gap
		c.mu.Unlock()
		return err
	}
	if err := c.subscribe(ctx, node); err != nil {
		c.mu.Lock()
		c.natsGap = c.natsGap || gap
		c.mu.Unlock()
		return err
	}
	started := time.Time(info.StatusInfo.StartupTime)
	c.mu.Lock()
	restarted := c.everUp && !started.Equal(c.started)
	fresh := !c.status.Connected || gap || restarted
	c.started = started
	if fresh {
		if c.everUp {
			c.status.Reconnects++
		}
		c.everUp = true
		c.status.Connected, c.status.Err, c.status.Since = true, "", time.Now()
		c.status.Node = ari.Node{ID: node, Name: info.ConfigInfo.Name}
	}
	c.mu.Unlock()
	if fresh {
		c.log.Info("ari-proxy: connected", "node", node, "system", info.ConfigInfo.Name,
			"application", c.cfg.Application, "asterisk_restarted", restarted, "nats_gap", gap)
		c.notify()
		select {
		case c.repairNow <- struct{}{}:
		default:
		}
	}
	return nil
}

// setDown records why the client is down; the cause is logged when it
// changes, not at every retry.
func (c *Client) setDown(msg string) {
	c.mu.Lock()
	changed := c.status.Connected || c.status.Err != msg
	if c.status.Connected {
		c.status.Since = time.Now()
	}
	c.status.Connected, c.status.Err = false, msg
	c.mu.Unlock()
	if changed {
		c.log.Warn("ari-proxy: not connected", "cause", msg, "node", c.Node(), "retry_in", c.cfg.RetryInterval)
	}
}

func describe(err error) string {
	return "ari-proxy: " + strings.TrimPrefix(err.Error(), "ariproxy: ")
}
