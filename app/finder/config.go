package finder

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the Extension Finder section of doorman.yaml.
type Config struct {
	// Listen is the FastAGI address. Asterisk must reach it: the default
	// 127.0.0.1:4573 suits an agent beside its Asterisk; a containerised or
	// remote Asterisk needs an address it can route to (and a firewall rule
	// that lets only Asterisk in: FastAGI has no authentication).
	Listen string `yaml:"listen"`
	// Server is this server's name; it must equal Asterisk's systemname
	// (asterisk.conf), which PJSIP writes into every contact as reg_server.
	Server string `yaml:"server"`
	// SIPAddr is where the other servers send calls for phones registered
	// here (ip:port or host:port of this Asterisk's PJSIP transport).
	SIPAddr string `yaml:"sip_addr"`
	// InterserverEndpoint is the PJSIP endpoint (on every server) through
	// which calls to phones registered on other servers are sent.
	InterserverEndpoint string `yaml:"interserver_endpoint"`
	// EndpointTemplate maps dialLocal's account and extension arguments to
	// the PJSIP endpoint/AOR name: "{exten}" (single tenant) or e.g.
	// "{account}-{exten}". Only {account} and {exten} are placeholders.
	EndpointTemplate string `yaml:"endpoint_template"`
	// Accounts, when not empty, lists the accounts dialLocal accepts; any
	// other account gets dialStatus UNKNOWN_ACCOUNT.
	Accounts []string `yaml:"accounts"`
	// AllowedOptions are the Dial option letters a caller may pass.
	// Letters only: options with arguments in parentheses can run dialplan.
	AllowedOptions string `yaml:"allowed_options"`
	// MaxDialTimeout bounds the timeout argument (seconds).
	MaxDialTimeout int `yaml:"max_dial_timeout"`
	// ResyncInterval is how often the full contact list is read from
	// Asterisk (PJSIPShowContacts). A refresh REGISTER raises no event, so
	// this is how refreshed expiries reach the store.
	ResyncInterval time.Duration `yaml:"resync_interval"`
	// EventResyncDelay: after a contact appears in a ContactStatus event
	// (which carries no expiry or user agent), a full resync runs this much
	// later, coalescing bursts. 0 disables it (periodic resync only).
	EventResyncDelay time.Duration `yaml:"event_resync_delay"`
	// ExpiryGrace is added to each contact's expiry in the store, so that a
	// refresh seen only at the next resync does not make a live phone look
	// expired in between. Must be at least ResyncInterval.
	ExpiryGrace time.Duration `yaml:"expiry_grace"`
	// HeartbeatTTL: a server whose agent (or Asterisk) stops answering is no
	// location any more after at most this long. Beats every TTL/3.
	HeartbeatTTL time.Duration `yaml:"heartbeat_ttl"`
	// StoreTimeout bounds each write to the shared store.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// SessionTimeout bounds a whole FastAGI session (environment, replies).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// LookupTimeout bounds one lookup in the store during a session.
	LookupTimeout time.Duration `yaml:"lookup_timeout"`
	// MaxSessions caps concurrent FastAGI sessions; beyond it connections
	// are closed at once, so Asterisk's AGISTATUS is FAILURE and the sample
	// dialplan falls back to a local Dial.
	MaxSessions int `yaml:"max_sessions"`
	// Index (default true) keeps an in-memory copy of every registration,
	// loaded whole at start and after any gap in the store's registration
	// feed and kept current by the feed, so that dialLocal costs no store
	// round trip. Used when the store has a feed (Redis and the embedded
	// store do); false: every dialLocal asks the store, one round trip.
	Index bool `yaml:"index"`
	// IndexRefresh, when positive, reloads the index whole this often on
	// top of the feed (a safety net; each reload reads the whole store).
	// 0 (default): only at start and after a gap in the feed.
	IndexRefresh time.Duration `yaml:"index_refresh"`
}

// DefaultConfig returns the documented defaults. Server and SIPAddr have no
// default and must be set.
func DefaultConfig() Config {
	return Config{
		Listen:              "127.0.0.1:4573",
		InterserverEndpoint: "doorman-interserver",
		EndpointTemplate:    "{exten}",
		AllowedOptions:      DefaultAllowedOptions,
		MaxDialTimeout:      600,
		ResyncInterval:      60 * time.Second,
		EventResyncDelay:    2 * time.Second,
		ExpiryGrace:         90 * time.Second,
		HeartbeatTTL:        15 * time.Second,
		StoreTimeout:        2 * time.Second,
		SessionTimeout:      5 * time.Second,
		LookupTimeout:       500 * time.Millisecond,
		MaxSessions:         4096,
		Index:               true,
		IndexRefresh:        0,
	}
}

// DefaultAllowedOptions are Dial options that take no argument and cannot
// run dialplan: t/T transfer, w/W record, k/K park, h/H hang up, x/X
// mixmonitor, r/R ringing, c, e, i, I, m, n, z.
const DefaultAllowedOptions = "tTwWkKhHxXrRceiImnz"

// Validate reports every problem, each naming its yaml key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("finder: %s: %s", key, fmt.Sprintf(format, a...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port, got %q", c.Listen)
	}
	if c.Server == "" {
		bad("server", "required (Asterisk's systemname)")
	} else if !validName(c.Server) {
		bad("server", "%q has characters outside A-Z a-z 0-9 . _ + -", c.Server)
	}
	if c.SIPAddr == "" {
		bad("sip_addr", "required (ip:port other servers send calls to)")
	} else if err := checkHostPort(c.SIPAddr); err != nil {
		bad("sip_addr", "%v", err)
	}
	if !validName(c.InterserverEndpoint) {
		bad("interserver_endpoint", "want a PJSIP endpoint name, got %q", c.InterserverEndpoint)
	}
	if _, err := parseTemplate(c.EndpointTemplate); err != nil {
		bad("endpoint_template", "%v", err)
	}
	for _, a := range c.Accounts {
		if !validName(a) {
			bad("accounts", "%q has characters outside A-Z a-z 0-9 . _ + -", a)
		}
	}
	for _, r := range c.AllowedOptions {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			bad("allowed_options", "only letters are allowed, got %q", r)
			break
		}
	}
	if c.MaxDialTimeout < 1 {
		bad("max_dial_timeout", "must be at least 1, got %d", c.MaxDialTimeout)
	}
	positive := []struct {
		key string
		d   time.Duration
	}{
		{"resync_interval", c.ResyncInterval}, {"heartbeat_ttl", c.HeartbeatTTL},
		{"store_timeout", c.StoreTimeout}, {"session_timeout", c.SessionTimeout},
		{"lookup_timeout", c.LookupTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad(p.key, "must be positive, got %v", p.d)
		}
	}
	if c.EventResyncDelay < 0 {
		bad("event_resync_delay", "must not be negative, got %v", c.EventResyncDelay)
	}
	if c.IndexRefresh < 0 {
		bad("index_refresh", "must not be negative (0: reload only at start and after a gap in the feed), got %v", c.IndexRefresh)
	}
	if c.ExpiryGrace < c.ResyncInterval {
		bad("expiry_grace", "must be at least resync_interval (%v), got %v: live phones would look expired between resyncs", c.ResyncInterval, c.ExpiryGrace)
	}
	if c.MaxSessions < 1 {
		bad("max_sessions", "must be at least 1, got %d", c.MaxSessions)
	}
	return errors.Join(errs...)
}

// validName reports whether s is a safe endpoint, AOR, account or server
// name: it may go into a dial string and a SIP URI user part, so nothing
// that Dial or SIP treats specially (, & | ; " ( ) $ / @ : space ...).
func validName(s string) bool {
	if s == "" || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= '0' && b <= '9', b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z':
		case b == '.', b == '_', b == '+', b == '-':
		default:
			return false
		}
	}
	return true
}

// checkHostPort validates a server SIP address: an IP or DNS name and a
// port, with nothing that could break out of the dial string.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want ip:port or host:port, got %q", s)
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("bad port in %q", s)
	}
	if host == "" {
		return fmt.Errorf("empty host in %q", s)
	}
	for i := 0; i < len(host); i++ {
		b := host[i]
		switch {
		case b >= '0' && b <= '9', b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z':
		case b == '.', b == '-', b == ':': // ':' for IPv6 inside brackets
		default:
			return fmt.Errorf("bad character %q in host of %q", b, s)
		}
	}
	return nil
}

// template is a parsed EndpointTemplate.
type template struct {
	parts     []string // literal text and placeholders, in order
	usesAcct  bool
	usesExten bool
}

func parseTemplate(s string) (template, error) {
	var t template
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, rest)
			break
		}
		if i > 0 {
			t.parts = append(t.parts, rest[:i])
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return template{}, fmt.Errorf("unclosed { in %q", s)
		}
		ph := rest[i : i+j+1]
		switch ph {
		case "{account}":
			t.usesAcct = true
		case "{exten}":
			t.usesExten = true
		default:
			return template{}, fmt.Errorf("unknown placeholder %s in %q (use {account} and {exten})", ph, s)
		}
		t.parts = append(t.parts, ph)
		rest = rest[i+j+1:]
	}
	if !t.usesExten {
		return template{}, fmt.Errorf("%q must contain {exten}", s)
	}
	for _, p := range t.parts {
		if p != "{account}" && p != "{exten}" && (strings.ContainsAny(p, "}") || !validName(p)) {
			return template{}, fmt.Errorf("literal %q in %q has characters outside A-Z a-z 0-9 . _ + -", p, s)
		}
	}
	return t, nil
}

// name expands the template; account and exten are already validated.
func (t template) name(account, exten string) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p {
		case "{account}":
			b.WriteString(account)
		case "{exten}":
			b.WriteString(exten)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}
