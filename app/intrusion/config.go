package intrusion

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// OnSuccess policies: what a successful login from an address does to the
// strikes of that address.
const (
	// OnSuccessKeep (the default) leaves strikes alone. An office behind one
	// NAT address holds many phones; one successful login among them says
	// nothing about the misconfigured phone or the attacker sharing that
	// address, and a reset would let an attacker with one valid account
	// clear its own strikes between guesses.
	OnSuccessKeep = "keep"
	// OnSuccessReset deletes the address's strikes (cluster-wide). It never
	// lifts a ban and never resets the escalation count.
	OnSuccessReset = "reset"
)

// Config is the intrusion section of doorman.yaml. Zero values are not
// defaults: start from DefaultConfig and overlay the file.
type Config struct {
	// TriggerEvents are the security event types that count as failed
	// attempts.
	TriggerEvents []string `yaml:"trigger_events"`
	// Services limits counting to these services (PJSIP, AMI, ...); empty
	// means every service.
	Services []string `yaml:"services"`
	// AttemptWindow groups the events of one attempt: events with the same
	// SessionID and source within this window of the first are one attempt.
	AttemptWindow time.Duration `yaml:"attempt_window"`
	// Threshold is the number of failed attempts within StrikeWindow that
	// bans an address; 1 bans at the first failure.
	Threshold int64 `yaml:"threshold"`
	// StrikeWindow is how long strikes are remembered (cluster-wide).
	StrikeWindow time.Duration `yaml:"strike_window"`
	// BanTime is the length of the first temporary ban.
	BanTime time.Duration `yaml:"ban_time"`
	// BanTimeFactor multiplies the ban time for each earlier temporary ban
	// of the same prefix within EscalationWindow (1 keeps it constant).
	BanTimeFactor float64 `yaml:"ban_time_factor"`
	// MaxBanTime caps a growing temporary ban.
	MaxBanTime time.Duration `yaml:"max_ban_time"`
	// PermanentAfter: after this many temporary bans of a prefix within
	// EscalationWindow, the next ban is permanent. 0 disables permanent bans.
	PermanentAfter int64 `yaml:"permanent_after"`
	// EscalationWindow is how long temporary bans are remembered.
	EscalationWindow time.Duration `yaml:"escalation_window"`
	// IPv4PrefixLen and IPv6PrefixLen give the size of the banned prefix
	// around a source address.
	IPv4PrefixLen int `yaml:"ipv4_prefix_len"`
	IPv6PrefixLen int `yaml:"ipv6_prefix_len"`
	// NeverBan lists trusted networks and the cluster's servers (addresses
	// or CIDR prefixes). Loopback is never banned in any case.
	NeverBan Prefixes `yaml:"never_ban"`
	// OnSuccess is OnSuccessKeep or OnSuccessReset.
	OnSuccess string `yaml:"on_success"`
	// ReconcileInterval is how often the firewall is checked (and repaired
	// if someone flushed it).
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// ResyncInterval is how often the kernel set is fully reconciled with
	// the store's ban list, on top of the change feed.
	ResyncInterval time.Duration `yaml:"resync_interval"`
	// StoreTimeout bounds each store call.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// MaxTracked caps the attempts and addresses held in memory.
	MaxTracked int `yaml:"max_tracked"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		TriggerEvents:     []string{"InvalidPassword", "InvalidAccountID", "ChallengeResponseFailed"},
		AttemptWindow:     2 * time.Second,
		Threshold:         1,
		StrikeWindow:      10 * time.Minute,
		BanTime:           30 * time.Second,
		BanTimeFactor:     1,
		MaxBanTime:        time.Hour,
		PermanentAfter:    5,
		EscalationWindow:  24 * time.Hour,
		IPv4PrefixLen:     32,
		IPv6PrefixLen:     64,
		OnSuccess:         OnSuccessKeep,
		ReconcileInterval: 5 * time.Second,
		ResyncInterval:    5 * time.Minute,
		StoreTimeout:      2 * time.Second,
		MaxTracked:        100_000,
	}
}

// Validate checks c and names every bad field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("intrusion: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be positive, got %s", d)
		}
	}
	if len(c.TriggerEvents) == 0 {
		bad("trigger_events", "must list at least one event type")
	}
	for _, t := range c.TriggerEvents {
		if strings.TrimSpace(t) == "" {
			bad("trigger_events", "empty event type")
		}
	}
	positive("attempt_window", c.AttemptWindow)
	if c.Threshold < 1 {
		bad("threshold", "must be at least 1, got %d", c.Threshold)
	}
	positive("strike_window", c.StrikeWindow)
	positive("ban_time", c.BanTime)
	if c.BanTimeFactor < 1 {
		bad("ban_time_factor", "must be at least 1, got %g", c.BanTimeFactor)
	}
	if c.MaxBanTime < c.BanTime {
		bad("max_ban_time", "must be at least ban_time (%s), got %s", c.BanTime, c.MaxBanTime)
	}
	if c.PermanentAfter < 0 {
		bad("permanent_after", "must be 0 (off) or more, got %d", c.PermanentAfter)
	}
	positive("escalation_window", c.EscalationWindow)
	if c.IPv4PrefixLen < 8 || c.IPv4PrefixLen > 32 {
		bad("ipv4_prefix_len", "must be between 8 and 32, got %d", c.IPv4PrefixLen)
	}
	if c.IPv6PrefixLen < 16 || c.IPv6PrefixLen > 128 {
		bad("ipv6_prefix_len", "must be between 16 and 128, got %d", c.IPv6PrefixLen)
	}
	for _, p := range c.NeverBan {
		if !p.IsValid() {
			bad("never_ban", "invalid prefix %v", p)
		}
	}
	switch c.OnSuccess {
	case OnSuccessKeep, OnSuccessReset:
	default:
		bad("on_success", "must be %q or %q, got %q", OnSuccessKeep, OnSuccessReset, c.OnSuccess)
	}
	positive("reconcile_interval", c.ReconcileInterval)
	positive("resync_interval", c.ResyncInterval)
	positive("store_timeout", c.StoreTimeout)
	if c.MaxTracked < 100 {
		bad("max_tracked", "must be at least 100, got %d", c.MaxTracked)
	}
	return errors.Join(errs...)
}

// Prefixes is a list of networks that reads addresses ("192.0.2.7") as
// host prefixes and CIDR prefixes as given (masked).
type Prefixes []netip.Prefix

// UnmarshalYAML reads a sequence of addresses or prefixes.
func (p *Prefixes) UnmarshalYAML(n *yaml.Node) error {
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	out := make(Prefixes, 0, len(ss))
	for _, s := range ss {
		q, err := ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("intrusion: never_ban: %w", err)
		}
		out = append(out, q)
	}
	*p = out
	return nil
}

// MarshalYAML writes the prefixes as strings.
func (p Prefixes) MarshalYAML() (any, error) {
	ss := make([]string, len(p))
	for i, q := range p {
		ss[i] = q.String()
	}
	return ss, nil
}

// ParsePrefix accepts an address (a host prefix) or a CIDR prefix, which is
// masked. IPv4-mapped IPv6 addresses become IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
