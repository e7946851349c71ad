package finder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asterisksupport/doorman/app/state"
)

// AGIDeps are the FastAGI server's collaborators.
type AGIDeps struct {
	Store      state.Registrations   // lookups; with state.Cluster and state.RegistrationWatcher too, the index
	Local      LocalView             // this server's own contacts (the Tracker); nil: store only
	Log        *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // nil: time.Now
}

// AGIServer answers Asterisk's FastAGI dialLocal requests.
type AGIServer struct {
	c      *compiled
	deps   AGIDeps
	log    *slog.Logger
	m      *agiMetrics
	locate func(ctx context.Context, name string) ([]state.Registration, error)
	idx    *index // nil when Config.Index is off or the store has no feed

	sem   chan struct{}
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	live  atomic.Int64 // sessions in progress (the gauge, readable)
}

// compiled is a validated Config with its template parsed.
type compiled struct {
	cfg  Config
	tmpl template
}

// NewAGIServer checks cfg and deps and builds the server; Run starts it.
func NewAGIServer(cfg Config, deps AGIDeps) (*AGIServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("finder: AGI server needs a store")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	tmpl, _ := parseTemplate(cfg.EndpointTemplate) // checked by Validate
	s := &AGIServer{
		c: &compiled{cfg: cfg, tmpl: tmpl}, deps: deps, log: deps.Log,
		sem: make(chan struct{}, cfg.MaxSessions), conns: map[net.Conn]struct{}{},
	}
	m, err := newAGIMetrics(deps.Registerer, func() float64 {
		if s.idx == nil {
			return 0
		}
		return float64(s.idx.size.Load())
	})
	if err != nil {
		return nil, err
	}
	s.m = m
	s.locate = deps.Store.LookupAOR
	if st, ok := deps.Store.(feedStore); ok && cfg.Index {
		s.idx = newIndex(st, deps.Now, cfg.HeartbeatTTL, cfg.IndexRefresh, deps.Log)
		s.idx.onReload = func(err error) {
			if err != nil {
				s.m.refresh.WithLabelValues("error").Inc()
				return
			}
			s.m.refresh.WithLabelValues("ok").Inc()
		}
		s.locate = s.idx.locate
	} else if cfg.Index {
		deps.Log.Info("finder: the store has no registration feed; every dialLocal asks the store")
	}
	return s, nil
}

// Run listens on Config.Listen (with Listen) and serves until ctx ends.
func (s *AGIServer) Run(ctx context.Context) error {
	ln, err := Listen(ctx, s.c.cfg.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Listen opens a FastAGI listener on addr. Accepted connections get no TCP
// keep-alive: a session lasts at most session_timeout, and Go's default
// keep-alive costs four setsockopt calls per connection (about a quarter of a
// dialLocal session's syscalls). On Linux the listener defers accept until
// the environment arrives (see deferAccept).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error { return deferAccept(c) }}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("finder: FastAGI listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves FastAGI on ln until ctx ends, then closes ln and every open
// session and returns once all session goroutines have ended. A listener
// from Listen saves syscalls per session.
func (s *AGIServer) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	bg.Add(1)
	go func() {
		defer bg.Done()
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	if s.idx != nil {
		bg.Add(1)
		go func() { defer bg.Done(); s.idx.run(ctx) }()
	}
	s.log.Info("finder: FastAGI listening", "addr", ln.Addr().String())
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			if !errors.Is(err, net.ErrClosed) {
				// e.g. EMFILE: back off rather than spin, then go on.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.log.Warn("finder: FastAGI accept failed, retrying", "err", err, "in", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			cancel()
			s.wg.Wait()
			return fmt.Errorf("finder: FastAGI accept: %w", err)
		}
		tempDelay = 0
		select {
		case s.sem <- struct{}{}:
		default:
			s.m.rejected.Inc()
			conn.Close() // Asterisk sees AGISTATUS FAILURE and falls back
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil { // shutting down: the closer may have run already
			s.mu.Unlock()
			conn.Close()
			<-s.sem
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				<-s.sem
				s.wg.Done()
			}()
			s.session(ctx, conn)
		}()
	}
}

// accountKnown applies Config.Accounts.
func (c *compiled) accountKnown(a string) bool {
	return len(c.cfg.Accounts) == 0 || slices.Contains(c.cfg.Accounts, a)
}
