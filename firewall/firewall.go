// Package firewall owns doorman's kernel ban sets. It defines the Firewall
// interface that the Intrusion Monitor programs, and its backends (nftables
// in firewall/nft, ipset in firewall/ipset) keep their own table or sets and
// one drop rule, and never touch anything else.
package firewall

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Entry is one banned source: a host (/32, /128) or an IPv6 prefix (/64 by
// default). Timeout 0 means permanent.
type Entry struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// Permanent reports whether the entry never expires.
func (e Entry) Permanent() bool { return e.Timeout == 0 }

// ErrMissing is wrapped by Check when the table, a set or the drop rule is
// gone (for example after `nft flush ruleset`).
var ErrMissing = errors.New("firewall: doorman's table or set is missing")

// ErrUnsupported is returned by constructors on platforms without the backend.
var ErrUnsupported = errors.New("firewall: backend not supported on this platform")

// Firewall is a kernel set of banned sources plus the rule that drops them
// before conntrack (prerouting, priority raw).
type Firewall interface {
	// Init creates the table or sets and the drop rule if missing. Idempotent.
	Init(ctx context.Context) error
	// Add inserts entries in one batch; re-adding an entry refreshes its timeout.
	Add(ctx context.Context, entries []Entry) error
	// Delete removes entries; prefixes that are not present are ignored.
	Delete(ctx context.Context, prefixes []netip.Prefix) error
	// List returns what the kernel holds now, Timeout being the time left.
	List(ctx context.Context) ([]Entry, error)
	// Check returns an error wrapping ErrMissing if anything doorman owns is gone.
	Check(ctx context.Context) error
	// Close releases the backend's resources; the kernel state stays.
	Close() error
}
