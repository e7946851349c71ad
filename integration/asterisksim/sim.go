package asterisksim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// Sim is one simulated Asterisk server.
type Sim struct {
	cfg  Config
	log  *slog.Logger
	core *core

	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	conns   *connSet
	amiLn   net.Listener
	sip     *sipServer
	httpSrv *http.Server
	ctlSrv  *http.Server
	logFile *os.File
	msgFile *os.File
	unsubs  []func()

	// bound addresses, kept so a restart comes back on the same ports
	amiAddr, sipAddr, httpAddr, ctlAddr string

	// newHTTPHandler builds the ARI server for HTTPAddr at every start (a
	// restart forgets Stasis applications); nil leaves HTTPAddr unserved.
	newHTTPHandler func() http.Handler
	// agiDial starts a FastAGI session for the control surface; nil = unsupported.
	agiDial func(ctx context.Context, req AGIRequest) (AGIResult, error)
}

// New checks cfg and builds a simulator; Start binds its listeners.
func New(cfg Config, log *slog.Logger) (*Sim, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("asterisk", cfg.SystemName)
	persisted, err := loadPersisted(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	c := newCore(cfg, log)
	c.reset(persisted)
	s := &Sim{cfg: cfg, log: log, core: c, conns: newConnSet(),
		amiAddr: cfg.AMIAddr, sipAddr: cfg.SIPAddr, httpAddr: cfg.HTTPAddr, ctlAddr: cfg.ControlAddr}
	s.initHTTP()
	c.restart = func() {
		// Not on the AMI session's goroutine: Restart waits for it to end.
		go func() {
			if err := s.Restart(context.Background()); err != nil {
				s.log.Warn("restart from AMI Command", "err", err)
			}
		}()
	}
	return s, nil
}

// Start binds every configured listener and serves until Close.
func (s *Sim) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.running {
		return errors.New("asterisksim: already started")
	}
	if err := s.startLocked(ctx); err != nil {
		return err
	}
	if s.ctlAddr != "" && s.ctlSrv == nil {
		ln, err := net.Listen("tcp", s.ctlAddr)
		if err != nil {
			s.stopLocked()
			return fmt.Errorf("asterisksim: control listen: %w", err)
		}
		s.ctlAddr = ln.Addr().String()
		s.ctlSrv = &http.Server{Handler: s.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.ctlSrv.Serve(ln) }()
	}
	return nil
}

func (s *Sim) startLocked(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.stopLocked()
		}
	}()
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.running = true
	s.core.startLocals(rctx)
	if s.cfg.SecurityLogPath != "" {
		f, err := os.OpenFile(s.cfg.SecurityLogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("asterisksim: security log: %w", err)
		}
		s.logFile = f
		now := time.Now()
		fmt.Fprintf(f, "[%s] Asterisk %s built by root @ asterisksim on a x86_64 running Linux on %s\n",
			now.Format("2006-01-02 15:04:05.000"), s.cfg.Version, now.UTC().Format("2006-01-02 15:04:05 UTC"))
		tid := s.core.tid
		s.unsubs = append(s.unsubs, s.core.hub.subscribe(func(e event) {
			if e.sec != nil {
				_, _ = f.WriteString(e.sec.logLine(time.Now(), tid))
			}
		}))
	}
	if s.cfg.MessagesLogPath != "" {
		f, err := os.OpenFile(s.cfg.MessagesLogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("asterisksim: messages log: %w", err)
		}
		s.msgFile = f
		s.unsubs = append(s.unsubs, s.core.hub.subscribe(func(e event) {
			if e.notice != nil {
				_, _ = f.WriteString(e.notice.logLine(time.Now()))
			}
		}))
	}
	if s.amiAddr != "" {
		ln, err := net.Listen("tcp", s.amiAddr)
		if err != nil {
			return fmt.Errorf("asterisksim: AMI listen: %w", err)
		}
		s.amiAddr = ln.Addr().String()
		s.amiLn = ln
		srv := &amiServer{c: s.core, ln: trackingListener{ln, s.conns}, conns: s.conns}
		srv.wg.Add(1)
		s.wg.Add(1)
		go func() { srv.serve(rctx); srv.wg.Wait(); s.wg.Done() }()
	}
	if s.sipAddr != "" {
		udp, tcp, err := listenSIP(s.sipAddr)
		if err != nil {
			return err
		}
		s.sipAddr = udp.LocalAddr().String()
		s.sip = &sipServer{c: s.core, udp: udp, tcp: trackingListener{tcp, s.conns}, conns: s.conns, secret: randHex(32)}
		s.sip.wg.Add(2)
		go s.sip.serveUDP()
		go s.sip.serveTCP(rctx)
	}
	if s.httpAddr != "" && s.newHTTPHandler != nil {
		ln, err := net.Listen("tcp", s.httpAddr)
		if err != nil {
			return fmt.Errorf("asterisksim: HTTP listen: %w", err)
		}
		s.httpAddr = ln.Addr().String()
		s.httpSrv = &http.Server{Handler: s.newHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		srv := s.httpSrv
		go func() { _ = srv.Serve(trackingListener{ln, s.conns}) }()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := s.cfg.ExpiryCheck
		if q := s.cfg.QualifyFrequency; q > 0 {
			tick = min(tick, 100*time.Millisecond, q/4)
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				s.core.expire()
				s.core.qualifyTick()
			}
		}
	}()
	return nil
}

// stopLocked drops every listener and connection, as an Asterisk exit does.
func (s *Sim) stopLocked() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.amiLn != nil {
		_ = s.amiLn.Close()
		s.amiLn = nil
	}
	if s.sip != nil {
		_ = s.sip.udp.Close()
		_ = s.sip.tcp.Close()
	}
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
		s.httpSrv = nil
	}
	s.conns.closeAll()
	if s.sip != nil {
		s.sip.wg.Wait()
		s.sip = nil
	}
	s.wg.Wait()
	s.core.stopLocals()
	for _, u := range s.unsubs {
		u()
	}
	s.unsubs = nil
	for _, f := range []**os.File{&s.logFile, &s.msgFile} {
		if *f != nil {
			_ = (*f).Close()
			*f = nil
		}
	}
	s.running = false
}

// Close stops the simulator for good.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stopLocked()
	if s.ctlSrv != nil {
		_ = s.ctlSrv.Close()
	}
	return nil
}

// Restart behaves like an Asterisk restart: every AMI, ARI and SIP
// connection drops, contacts and device states are forgotten, the
// persisted Stasis states are replayed, and the listeners come back on
// the same addresses.
func (s *Sim) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.stopLocked()
	persisted, err := loadPersisted(s.cfg.StateDir)
	if err != nil {
		return err
	}
	if s.cfg.StateDir == "" {
		persisted = s.core.StasisStates() // no StateDir: keep them in memory
	}
	s.core.reset(persisted)
	return s.startLocked(ctx)
}

// AMIAddr, SIPAddr, HTTPAddr and ControlAddr return the bound addresses
// (useful with ":0" ports); "" when disabled.
func (s *Sim) AMIAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.amiAddr }

// SIPAddr is the UDP and TCP address of the registrar.
func (s *Sim) SIPAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.sipAddr }

// HTTPAddr is the ARI address ("" if not served).
func (s *Sim) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.newHTTPHandler == nil {
		return ""
	}
	return s.httpAddr
}

// ControlAddr is the control API address.
func (s *Sim) ControlAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.ctlAddr }

// Config returns the configuration with defaults applied.
func (s *Sim) Config() Config { return s.cfg }

// SetDeviceState sets a device state as a call would (PJSIP/1001 RINGING,
// INUSE, NOT_INUSE) or as an ARI PUT does for Stasis:<x>.
func (s *Sim) SetDeviceState(device, state string) error { return s.core.SetDeviceState(device, state) }

// DeviceState returns a device's current state as ARI GET would.
func (s *Sim) DeviceState(device string) string { return s.core.DeviceState(device) }

// ExtensionState returns the hint state of ext (0 Idle, 1 InUse, 4 Unavailable, 8 Ringing, ...).
func (s *Sim) ExtensionState(ext string) int {
	s.core.mu.Lock()
	defer s.core.mu.Unlock()
	return s.core.hintStateLocked(ext)
}

// Contacts lists the registered contacts.
func (s *Sim) Contacts() []Contact { return s.core.Contacts() }

// Backend returns the core as the ARI server's backend.
func (s *Sim) Backend() ari.Backend { return s.core }

// listenSIP binds UDP and TCP on the same host:port. With port 0 it retries
// until a UDP port whose TCP twin is also free turns up.
func listenSIP(addr string) (*net.UDPConn, net.Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("asterisksim: SIP address: %w", err)
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, nil, fmt.Errorf("asterisksim: SIP UDP listen: %w", err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			_ = udp.SetReadBuffer(4 << 20) // absorb attack bursts; one reader keeps event order
			return udp, tcp, nil
		}
		_ = udp.Close()
		if ua.Port != 0 || attempt >= 20 {
			return nil, nil, fmt.Errorf("asterisksim: SIP TCP listen: %w", err)
		}
	}
}
