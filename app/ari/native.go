package ari

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ariv6 "github.com/CyCoreSystems/ari/v6"
	"github.com/gorilla/websocket"
)

// NativeConfig configures the direct HTTP + websocket transport.
type NativeConfig struct {
	URL          string `yaml:"url"`           // REST root, e.g. http://127.0.0.1:8088/ari
	WebsocketURL string `yaml:"websocket_url"` // default: URL with ws(s):// and /events
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	Application  string `yaml:"application"` // Stasis application name, default "doorman"

	RequestTimeout time.Duration `yaml:"request_timeout"` // every REST call; default 2s
	DialTimeout    time.Duration `yaml:"dial_timeout"`    // websocket handshake; default 5s
	PingInterval   time.Duration `yaml:"ping_interval"`   // websocket keepalive; default 10s
	BackoffMin     time.Duration `yaml:"backoff_min"`     // first retry delay; default 500ms
	BackoffMax     time.Duration `yaml:"backoff_max"`     // default 30s
	EventBuffer    int           `yaml:"event_buffer"`    // Events() capacity; default 16384
}

// LogValue keeps the password out of logs.
func (c NativeConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", c.URL), slog.String("websocket_url", c.WebsocketURL),
		slog.String("username", c.Username), slog.String("application", c.Application))
}

func (c NativeConfig) withDefaults() NativeConfig {
	if c.Application == "" {
		c.Application = "doorman"
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 10 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 500 * time.Millisecond
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(30*time.Second, c.BackoffMin)
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 16384
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.WebsocketURL == "" {
		if u, err := url.Parse(c.URL); err == nil {
			switch u.Scheme {
			case "https":
				u.Scheme = "wss"
			default:
				u.Scheme = "ws"
			}
			u.Path += "/events"
			c.WebsocketURL = u.String()
		}
	}
	return c
}

// Validate checks the config (after defaults) and names the bad field.
func (c NativeConfig) Validate() error {
	c = c.withDefaults()
	for _, f := range []struct{ name, v string }{{"url", c.URL}, {"websocket_url", c.WebsocketURL}} {
		u, err := url.Parse(f.v)
		if err != nil || u.Host == "" {
			return fmt.Errorf("ari: %s: not an absolute URL: %q", f.name, f.v)
		}
		if u.User != nil {
			return fmt.Errorf("ari: %s: must not carry credentials; use username and password", f.name)
		}
	}
	if u, _ := url.Parse(c.URL); u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("ari: url: scheme %q is not http or https", u.Scheme)
	}
	if c.Username == "" {
		return errors.New("ari: username: required")
	}
	if c.Password == "" {
		return errors.New("ari: password: required")
	}
	if strings.ContainsAny(c.Application, "/?#& ") {
		return fmt.Errorf("ari: application: invalid name %q", c.Application)
	}
	return nil
}

// Native is the direct transport to one Asterisk.
//
// Why not ari/v6's native client for the connection: its Connect blocks,
// retrying forever (a wrong password hangs the agent and is never
// reported), it has no reconnect hook (the deviceState: subscription must
// be re-made after each reconnect, and gap events must trigger a resync),
// its REST calls have no timeout or context, its Data() does not escape
// '/', and its event bus drops silently past 100 events. Owning the
// websocket (gorilla/websocket) and a small keep-alive pool for REST
// (restPool) makes every (re)connect an exact, observable event, bounds
// every call, and lets the reader drain into a large buffer. ari/v6 still
// supplies the wire types.
type Native struct {
	cfg    NativeConfig
	log    *slog.Logger
	rest   *restPool
	auth   string // "Basic ..." header value; never logged
	events chan DeviceStateEvent
	signal chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	status Status
	everUp bool

	dropped  atomic.Int64
	lastDrop atomic.Int64 // unix nanos of the last drop log line
}

// NewNative starts connecting in the background and returns at once; it
// fails only on a bad config. It keeps reconnecting with backoff until ctx
// ends or Close is called.
func NewNative(ctx context.Context, cfg NativeConfig, log *slog.Logger) (*Native, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	rest, err := newRestPool(cfg.URL, cfg.DialTimeout)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	n := &Native{
		cfg:    cfg,
		log:    log,
		rest:   rest,
		auth:   "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password)),
		events: make(chan DeviceStateEvent, cfg.EventBuffer),
		signal: make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
		status: Status{Since: time.Now(), Err: "ARI: connecting"},
	}
	go n.run(ctx)
	return n, nil
}

// Events implements Client.
func (n *Native) Events() <-chan DeviceStateEvent { return n.events }

// Connected implements Client.
func (n *Native) Connected() <-chan struct{} { return n.signal }

// Status implements Client.
func (n *Native) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Dropped = n.dropped.Load()
	return s
}

// Close implements Client; it waits for the connection to end.
func (n *Native) Close() error {
	n.cancel()
	<-n.done
	n.rest.close()
	return nil
}

func (n *Native) notify() {
	select {
	case n.signal <- struct{}{}:
	default:
	}
}

func (n *Native) run(ctx context.Context) {
	defer close(n.done)
	defer close(n.events)
	backoff := n.cfg.BackoffMin
	for ctx.Err() == nil {
		up, err := n.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if up {
			backoff = n.cfg.BackoffMin
		}
		n.setDown(err, backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, n.cfg.BackoffMax)
	}
	n.mu.Lock()
	n.status.Connected, n.status.Err, n.status.Since = false, "ARI: closed", time.Now()
	n.mu.Unlock()
}

// setDown records why the connection is down; the cause is logged when it
// changes, so a wrong password is reported once, not every retry.
func (n *Native) setDown(err error, retry time.Duration) {
	msg := describe(err)
	n.mu.Lock()
	changed := n.status.Connected || n.status.Err != msg
	if n.status.Connected {
		n.status.Since = time.Now()
	}
	n.status.Connected, n.status.Err = false, msg
	n.mu.Unlock()
	if changed {
		n.log.Warn("ari: not connected", "cause", msg, "retry_in", retry, "url", n.cfg.URL)
	} else {
		n.log.Debug("ari: still not connected", "cause", msg, "retry_in", retry)
	}
}

// describe turns a connection error into the operator's one-liner.
func describe(err error) string {
	switch {
	case err == nil:
		return "ARI: connection closed"
	case errors.Is(err, ErrUnauthorized):
		return "ARI: 401 unauthorized"
	default:
		return "ARI: " + strings.TrimPrefix(err.Error(), "ari: ")
	}
}

// session dials, identifies the node, subscribes and reads until the
// connection fails. up reports whether it got as far as connected.
func (n *Native) session(ctx context.Context) (up bool, err error) {
	u, err := url.Parse(n.cfg.WebsocketURL)
	if err != nil {
		return false, fmt.Errorf("ari: websocket_url: %w", err)
	}
	q := u.Query()
	q.Set("app", n.cfg.Application)
	u.RawQuery = q.Encode()
	d := websocket.Dialer{HandshakeTimeout: n.cfg.DialTimeout}
	h := http.Header{"Authorization": {n.auth}}
	dctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	conn, resp, err := d.DialContext(dctx, u.String(), h)
	cancel()
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return false, ErrUnauthorized
			}
			return false, fmt.Errorf("ari: websocket handshake: HTTP %d", resp.StatusCode)
		}
		return false, fmt.Errorf("ari: websocket: %w", unwrapURL(err))
	}
	defer conn.Close()
	// Unblock the reader when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	node, err := n.info(ctx)
	if err != nil {
		return false, err
	}
	// An explicit subscription to every device state (re-made on every
	// connect: a new websocket may meet a fresh application).
	sub := "/applications/" + url.PathEscape(n.cfg.Application) + "/subscription"
	if err := n.do(ctx, http.MethodPost, sub, url.Values{"eventSource": {"deviceState:"}}, nil); err != nil {
		return false, err
	}

	n.mu.Lock()
	if n.everUp {
		n.status.Reconnects++
	}
	n.everUp = true
	n.status.Connected, n.status.Err, n.status.Node, n.status.Since = true, "", node, time.Now()
	n.mu.Unlock()
	n.log.Info("ari: connected", "node", node.ID, "system", node.Name, "application", n.cfg.Application)
	n.notify()

	return true, n.read(ctx, conn)
}

func (n *Native) read(ctx context.Context, conn *websocket.Conn) error {
	wait := 2*n.cfg.PingInterval + n.cfg.RequestTimeout
	conn.SetReadDeadline(time.Now().Add(wait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(wait)) })
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go func() {
		t := time.NewTicker(n.cfg.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(n.cfg.RequestTimeout)) != nil {
					conn.Close()
					return
				}
			}
		}
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("ari: websocket read: %w", err)
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		n.handle(data)
	}
}

// wsEvent is the part of an ARI event doorman reads. Decoding it directly
// (rather than ari.DecodeEvent) keeps one bad timestamp from losing a
// device state, and avoids decoding each event twice.
type wsEvent struct {
	Type        string                `json:"type"`
	Node        string                `json:"asterisk_id"`
	Timestamp   string                `json:"timestamp"`
	DeviceState ariv6.DeviceStateData `json:"device_state"`
}

func (n *Native) handle(data []byte) {
	now := time.Now()
	var e wsEvent
	if err := json.Unmarshal(data, &e); err != nil {
		n.log.Warn("ari: undecodable event", "error", err, "bytes", len(data))
		return
	}
	switch e.Type {
	case ariv6.Events.DeviceStateChanged:
	case ariv6.Events.ApplicationReplaced:
		n.log.Warn("ari: another client took over the application", "application", n.cfg.Application)
		return
	default:
		return
	}
	ts, _ := time.Parse(ariv6.DateFormat, e.Timestamp)
	ev := DeviceStateEvent{Node: e.Node, Device: e.DeviceState.Name, State: e.DeviceState.State, Time: ts, Received: now}
	select {
	case n.events <- ev:
	default:
		d := n.dropped.Add(1)
		if last := n.lastDrop.Load(); now.UnixNano()-last > int64(10*time.Second) && n.lastDrop.CompareAndSwap(last, now.UnixNano()) {
			n.log.Warn("ari: consumer too slow, device state events dropped; asking for a resync", "dropped_total", d)
		}
		n.notify()
	}
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
