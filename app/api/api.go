// Package api owns the agent's HTTP surface: health (each job ready),
// Prometheus metrics, the cluster-wide bans API, the registration and lamp
// views, and the live BLF board page. Everything but /healthz needs the
// bearer token; the listener binds to localhost unless configured otherwise.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BanView is one ban as the API shows it.
type BanView struct {
	Prefix    string    `json:"prefix"`
	Permanent bool      `json:"permanent"`
	Expires   time.Time `json:"expires,omitzero"`
	TimeLeft  string    `json:"time_left,omitempty"`
	Reason    string    `json:"reason"`
	Server    string    `json:"server"`
	Strikes   int64     `json:"strikes"`
	Created   time.Time `json:"created,omitzero"`
}

// Bans is the operator's view of the Intrusion Monitor.
type Bans interface {
	// List returns the cluster's bans; with the store down it may return
	// this server's view together with the error.
	List(ctx context.Context) ([]BanView, error)
	// Ban bans p cluster-wide for d (0 = permanent).
	Ban(ctx context.Context, p netip.Prefix, d time.Duration, reason string) error
	Unban(ctx context.Context, p netip.Prefix) error
}

// Config is the api section of doorman's config.
type Config struct {
	Listen    string `yaml:"listen"`     // default 127.0.0.1:9485
	Token     string `yaml:"token"`      // bearer token; required
	TokenFile string `yaml:"token_file"` // alternative to token
}

// LogValue keeps the token out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("listen", c.Listen), slog.Bool("token_set", c.Token != ""))
}

// Deps are the parts the API shows. Nil parts answer 503.
type Deps struct {
	Bans     Bans
	Whereis  func(ctx context.Context, ext, account string) (any, error)
	Lamps    func(ctx context.Context) (any, error)
	Health   map[string]func() error // job name -> nil when ready
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
}

// Server is the HTTP API.
type Server struct {
	cfg  Config
	deps Deps
	mux  *http.ServeMux
}

// New builds the API; it refuses to start without a token.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("api: a token is required (api.token or api.token_file)")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.health)
	s.mux.Handle("GET /metrics", s.auth(s.metrics()))
	s.mux.Handle("GET /api/bans", s.auth(http.HandlerFunc(s.listBans)))
	s.mux.Handle("POST /api/bans", s.auth(http.HandlerFunc(s.ban)))
	s.mux.Handle("DELETE /api/bans/{addr...}", s.auth(http.HandlerFunc(s.unban)))
	s.mux.Handle("GET /api/whereis/{ext}", s.auth(http.HandlerFunc(s.whereis)))
	s.mux.Handle("GET /api/lamps", s.auth(http.HandlerFunc(s.lamps)))
	s.mux.Handle("GET /board", s.auth(http.HandlerFunc(s.board)))
}

// ServeHTTP makes Server an http.Handler (tests use it directly).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.deps.Log.Info("api listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// auth accepts "Authorization: Bearer <token>" or, for the board page in a
// browser, "?token=<token>".
func (s *Server) auth(next http.Handler) http.Handler {
	want := []byte(s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got == "" {
			got = r.URL.Query().Get("token")
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="doorman"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) metrics() http.Handler {
	if s.deps.Gatherer == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	out := map[string]string{}
	code := http.StatusOK
	for name, check := range s.deps.Health {
		if err := check(); err != nil {
			out[name] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			out[name] = "ok"
		}
	}
	writeJSON(w, code, out)
}

func (s *Server) listBans(w http.ResponseWriter, r *http.Request) {
	if s.deps.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("intrusion monitor is not running"))
		return
	}
	bans, err := s.deps.Bans.List(r.Context())
	if err != nil && bans == nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	if err != nil {
		// The store is down: this server's own view is still worth showing.
		w.Header().Set("X-Doorman-Partial", err.Error())
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].Prefix < bans[j].Prefix })
	writeJSON(w, http.StatusOK, bans)
}

// BanRequest is the body of POST /api/bans.
type BanRequest struct {
	Address  string `json:"address"`  // address or prefix
	Duration string `json:"duration"` // Go duration; "" or "0" = permanent
	Reason   string `json:"reason"`
}

func (s *Server) ban(w http.ResponseWriter, r *http.Request) {
	if s.deps.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("intrusion monitor is not running"))
		return
	}
	var req BanRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return
	}
	p, err := ParsePrefix(req.Address)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var d time.Duration
	if req.Duration != "" && req.Duration != "0" {
		if d, err = time.ParseDuration(req.Duration); err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad duration %q", req.Duration))
			return
		}
	}
	if req.Reason == "" {
		req.Reason = "manual"
	}
	if err := s.deps.Bans.Ban(r.Context(), p, d, req.Reason); err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"banned": p.String()})
}

func (s *Server) unban(w http.ResponseWriter, r *http.Request) {
	if s.deps.Bans == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("intrusion monitor is not running"))
		return
	}
	p, err := ParsePrefix(r.PathValue("addr"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.deps.Bans.Unban(r.Context(), p); err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"unbanned": p.String()})
}

func (s *Server) whereis(w http.ResponseWriter, r *http.Request) {
	if s.deps.Whereis == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("extension finder is not running"))
		return
	}
	v, err := s.deps.Whereis(r.Context(), r.PathValue("ext"), r.URL.Query().Get("account"))
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) lamps(w http.ResponseWriter, r *http.Request) {
	if s.deps.Lamps == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("busy lamp monitor is not running"))
		return
	}
	v, err := s.deps.Lamps(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ParsePrefix accepts "192.0.2.7", "2001:db8::1" (a host) or a CIDR prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
