package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Client is a reconnecting AMI client. Create it with NewClient, start Run
// once, and use Subscribe and Action from any goroutine.
type Client struct {
	cfg Config
	log *slog.Logger
	hub hub

	nextID atomic.Uint64
	prefix string

	mu     sync.Mutex
	sess   *session
	status Status

	reconnects, logins, loginFailures, parseErrors atomic.Uint64
}

var _ Conn = (*Client)(nil)

// Stats are the client's counters since NewClient, for metrics.
type Stats struct {
	EventsReceived uint64 // events read from the server (not responses, not list items)
	EventsDropped  uint64 // deliveries lost to full subscriber buffers
	Reconnects     uint64 // connection attempts after the first
	Logins         uint64 // successful logins
	LoginFailures  uint64 // logins refused by the server or timed out
	ParseErrors    uint64 // malformed lines or messages skipped
}

// Status is the connection's state for the health endpoint.
type Status struct {
	Connected   bool
	Addr        string
	Version     string    // AMI version from the banner, e.g. "11.0.0"
	Since       time.Time // when the current connection logged in, or when it was lost
	LastError   string    // the last connection or login error, "" if none yet
	LastErrorAt time.Time
}

// NewClient returns a client for cfg; nothing happens until Run.
// A nil log discards logs.
func NewClient(cfg Config, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Client{
		cfg:    cfg,
		log:    log.With("addr", cfg.Addr),
		prefix: "doorman-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-",
		status: Status{Addr: cfg.Addr},
	}
}

// Subscribe implements Conn. Events and the EventConnected messages are
// shared between subscribers: treat them as read-only. If the client is
// already logged in, the channel starts with an EventConnected message.
// Events that are replies to this client's list actions are not delivered.
func (c *Client) Subscribe(buf int) (<-chan Message, func()) { return c.hub.subscribe(buf) }

// OnEvent has f called with every event the server sends (not the
// EventConnected messages), in order, by the goroutine that reads the
// connection, until cancel is called. It saves a goroutine hand-off per
// event to a job that takes events faster than they come: f must return
// quickly, never block, and treat m as read-only (its strings may be
// kept). Nothing is dropped or buffered. f runs outside the client's
// locks: it may call cancel, Subscribe or OnEvent. When cancel is called
// from another goroutine, f may still get the one event being delivered.
func (c *Client) OnEvent(f func(m *Message)) (cancel func()) { return c.hub.onEvent(f) }

// OnBatchEnd has f called by the goroutine that reads the connection each
// time it has delivered every event read so far to the OnEvent functions,
// before it reads (and may wait) again, until cancel is called. A job can
// then apply the effects of a whole read batch at once: under a flood one
// read brings many events (see Config.Coalesce). While f runs, the reader
// does not read; the rules of OnEvent apply.
func (c *Client) OnBatchEnd(f func()) (cancel func()) { return c.hub.onBatchEnd(f) }

// Action implements Conn. It fails at once with ErrNotConnected while the
// client is not logged in. An Error response comes back as an
// *ActionError, except "No <things> found", which is an empty list.
func (c *Client) Action(ctx context.Context, action Message) (Message, []Message, error) {
	if err := checkAction(action); err != nil {
		return Message{}, nil, err
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return Message{}, nil, fmt.Errorf("ami: action %s: %w", action.Get("Action"), ErrNotConnected)
	}
	return s.do(ctx, c.newID(), action)
}

func (c *Client) newID() string {
	return c.prefix + strconv.FormatUint(c.nextID.Add(1), 10)
}

// Connected reports whether the client is logged in now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.Connected
}

// Status returns the connection state and the last error.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		EventsReceived: c.hub.received.Load(),
		EventsDropped:  c.hub.dropped.Load(),
		Reconnects:     c.reconnects.Load(),
		Logins:         c.logins.Load(),
		LoginFailures:  c.loginFailures.Load(),
		ParseErrors:    c.parseErrors.Load(),
	}
}

// Run connects, logs in and reads events until ctx ends, reconnecting with
// exponential backoff and jitter after any failure. It returns nil when ctx
// ends, or at once if the config is invalid.
func (c *Client) Run(ctx context.Context) error {
	if err := c.cfg.Validate(); err != nil {
		return err
	}
	c.log.Info("ami: starting", "config", c.cfg)
	b := newBackoff(c.cfg.BackoffMin, c.cfg.BackoffMax)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.reconnects.Add(1)
		}
		start := time.Now()
		loggedIn, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if loggedIn && time.Since(start) >= c.cfg.BackoffMax {
			b.reset() // it was a stable connection: retry quickly
		}
		wait := b.next()
		c.setError(err)
		var lerr *loginError
		if errors.As(err, &lerr) {
			c.log.Error("ami: login failed", "username", c.cfg.Username, "reason", lerr.reason, "retry_in", wait)
		} else if loggedIn {
			c.log.Warn("ami: connection lost", "err", err, "retry_in", wait)
		} else {
			c.log.Warn("ami: cannot connect", "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (c *Client) setError(err error) {
	c.mu.Lock()
	c.status.Connected = false
	c.status.LastError = err.Error()
	c.status.LastErrorAt = time.Now()
	c.mu.Unlock()
}

// session runs one connection: dial, login, read until it fails.
func (c *Client) session(ctx context.Context) (loggedIn bool, err error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return false, fmt.Errorf("ami: dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	var r io.Reader = conn
	if c.cfg.Coalesce > 0 {
		r = newCoalescer(conn, c.cfg.Coalesce)
	}
	// The parser reads only when every complete message it holds has been
	// returned, and the reader publishes each before asking for the next:
	// a read of the connection ends a batch.
	r = batchEnder{r: r, h: &c.hub}
	p := NewParser(r, c.cfg.Limits)
	version, err := c.login(conn, p)
	if err != nil {
		return false, err
	}

	s := newSession(conn, c.cfg.WriteTimeout)
	now := time.Now()
	c.mu.Lock()
	c.sess = s
	c.status.Connected, c.status.Version, c.status.Since = true, version, now
	c.mu.Unlock()
	c.logins.Add(1)
	c.log.Info("ami: logged in", "username", c.cfg.Username, "version", version, "md5", c.cfg.UseMD5)
	c.hub.setConnected(connectedMessage(c.cfg.Addr, version, now))

	pingCtx, cancelPing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.keepalive(pingCtx, s) })

	s.close(c.read(p, s))
	// A read that brought events and an error at once ends no batch
	// through batchEnder (the parser returns the error without reading
	// again): end it here, not at the next session's first read.
	c.hub.endBatch()
	err = s.closeErr()
	cancelPing()
	wg.Wait()

	c.mu.Lock()
	c.sess = nil
	c.status.Connected, c.status.Since = false, time.Now()
	c.mu.Unlock()
	c.hub.setConnected(nil)
	return true, err
}

// read dispatches messages until the connection fails.
func (c *Client) read(p *Parser, s *session) error {
	for {
		var m Message
		err := p.Next(&m)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				if c.parseErrors.Add(1) == 1 || c.log.Enabled(context.Background(), slog.LevelDebug) {
					c.log.Warn("ami: skipped malformed input", "err", err)
				}
				continue
			}
			return fmt.Errorf("ami: read: %w", err)
		}
		if s.route(&m) {
			continue
		}
		if m.Event() == "" {
			if _, ok := lookup(&m, "Response"); ok {
				// A reply to an action that timed out, or to another client's.
				c.log.Debug("ami: skipped a response nobody waits for", "response", m.Get("Response"))
			} else {
				c.parseErrors.Add(1)
				c.log.Debug("ami: skipped a message that is neither event nor response", "fields", len(m.Fields))
			}
			continue
		}
		c.hub.publish(m)
	}
}

// keepalive pings the server and drops the connection when a Ping goes
// unanswered, so a dead peer is noticed even when no events flow.
func (c *Client) keepalive(ctx context.Context, s *session) {
	if c.cfg.PingInterval < 0 {
		return
	}
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	ping := Message{Fields: []Field{{Key: "Action", Value: "Ping"}}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.hub.retryConnected()
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PingTimeout)
		_, _, err := s.do(pctx, c.newID(), ping)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.close(fmt.Errorf("ami: keepalive: %w", err))
			return
		}
	}
}

// batchEnder runs the OnBatchEnd functions before each read.
type batchEnder struct {
	r io.Reader
	h *hub
}

func (b batchEnder) Read(p []byte) (int, error) {
	b.h.endBatch()
	return b.r.Read(p)
}

// coalescer implements Config.Coalesce. Each wake-up of the reader costs
// a scheduler round and a syscall or two whether it brings one event or
// fifty; Asterisk writes each event on its own, so a stream of attempts a
// few hundred microseconds apart otherwise costs one wake-up per event.
// A sparse stream is read at once, and so is a backlog (a read that
// filled its buffer is followed at once by the next).
type coalescer struct {
	r          io.Reader
	d          time.Duration
	prev, last time.Time // when the last two reads returned
	full       bool      // the last read filled its buffer
	// now and sleep are time.Now and threadSleep; tests pass fakes.
	now   func() time.Time
	sleep func(time.Duration)
}

func newCoalescer(r io.Reader, d time.Duration) *coalescer {
	return &coalescer{r: r, d: d, now: time.Now, sleep: threadSleep}
}

func (c *coalescer) Read(b []byte) (int, error) {
	if !c.full && !c.prev.IsZero() && c.last.Sub(c.prev) < 2*c.d {
		if wait := c.d - c.now().Sub(c.last); wait > 0 {
			c.sleep(wait)
		}
	}
	n, err := c.r.Read(b)
	c.prev, c.last, c.full = c.last, c.now(), n == len(b)
	return n, err
}
