// Package ipset is doorman's ipset + iptables backend of firewall.Firewall.
// It owns four hash:net sets and one raw-table rule per set, nothing else:
//
//	doorman4, doorman6            temporary bans (created with `timeout`)
//	doorman4-perm, doorman6-perm  permanent bans (created without timeout)
//	iptables  -t raw -I PREROUTING -m set --match-set doorman4 src -m comment --comment doorman -j DROP
//	ip6tables -t raw -I PREROUTING -m set --match-set doorman6 src ...  (and the -perm sets)
//
// The raw table's PREROUTING chain runs before conntrack, so banned sources
// are dropped before any flow is tracked and before any filter rule can
// accept them; forwarded traffic (containerised Asterisk) is covered too.
// hash:net holds any prefix length, so IPv6 /64 bans and IPv4 hosts share a
// set per family. Permanent bans get their own sets because
// github.com/nadoo/ipset cannot express "timeout 0" (OptTimeout(0) is
// dropped, so the set's default timeout would apply).
//
// # Which library does what
//
// github.com/vishvananda/netlink (v1.3.1) does everything that needs a reply
// or a namespace: creating the sets idempotently with maxelem (nadoo has no
// maxelem, and the kernel default of 65,536 entries is too small), listing
// with per-entry time left and testing (nadoo has neither), destroying.
// Its nl package also carries what its ipset API lacks: header-only queries
// (IPSET_CMD_HEADER, so Check costs the same for a full set as for an empty
// one) and batched adds and deletes, one IPSET_ATTR_ADT message with up to
// Config.BatchSize entries as `ipset restore` sends them (IpsetAdd sends one
// entry per request). The kernel's answers are read, so a missing or full
// set is an error, not silence. Sockets are opened in Config.NetNS
// (netlink.NewHandleAt, nl.GetNetlinkSocketAt).
//
// github.com/nadoo/ipset (v0.5.0) has one package-global socket, bound to the
// namespace where ipset.Init ran, and never reads the kernel's replies. A
// process that tests in a fresh namespace per test (or an agent given a
// NetNS) cannot use it: a second Init would move every user's socket. It fits
// one case: an agent in its own (current) namespace that wants the cheapest
// possible write path. Config.Nadoo selects it there (NetNS must be "");
// each batch is then followed by one netlink test of its last entry, so a
// missing set still surfaces as an error. It is not the default: measured on
// this project's test machine, restoring 100,000 bans through nadoo (one
// syscall per entry) took about twice as long as the batched netlink path,
// and a single add cost the same (about 0.07-0.08 ms).
package ipset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/asterisksupport/doorman/firewall"
)

// Defaults of Config.
const (
	DefaultSet4      = "doorman4"
	DefaultSet6      = "doorman6"
	PermSuffix       = "-perm"
	DefaultMaxElem   = 1_000_000
	DefaultBatchSize = 1000
	// DefaultSetTimeout is the timeout sets' default, used only by entries
	// added without their own timeout, which this package never does.
	DefaultSetTimeout = 300
)

// Config says where and under which names the backend keeps its state.
type Config struct {
	// NetNS is the path of a network namespace file (e.g. /run/netns/x), or
	// "" for the namespace the process runs in.
	NetNS string
	// Set4 and Set6 name the temporary-ban sets; the permanent ones get
	// PermSuffix appended (defaults doorman4, doorman6, doorman4-perm, ...).
	Set4, Set6 string
	// MaxElem is each set's capacity (default 1,000,000; the kernel's own
	// default of 65,536 is below the 100,000 bans doorman must restore).
	MaxElem uint32
	// BatchSize is how many entries go into one netlink message (default
	// 1000; a message's entry list must stay under 64 KiB).
	BatchSize int
	// Nadoo writes entries with github.com/nadoo/ipset instead of netlink
	// batches. Only with NetNS "" (see the package comment).
	Nadoo bool
	// Iptables and Ip6tables are the commands run for the raw-table rules
	// (defaults "iptables", "ip6tables").
	Iptables, Ip6tables string
}

var namePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,25}$`)

func (c *Config) setDefaults() {
	if c.Set4 == "" {
		c.Set4 = DefaultSet4
	}
	if c.Set6 == "" {
		c.Set6 = DefaultSet6
	}
	if c.MaxElem == 0 {
		c.MaxElem = DefaultMaxElem
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Iptables == "" {
		c.Iptables = "iptables"
	}
	if c.Ip6tables == "" {
		c.Ip6tables = "ip6tables"
	}
}

func (c *Config) validate() error {
	for what, name := range map[string]string{"set4": c.Set4, "set6": c.Set6} {
		if !namePattern.MatchString(name) {
			return fmt.Errorf("ipset: bad %s name %q: want a letter then up to 25 letters, digits, _ . or -", what, name)
		}
	}
	if c.Set4 == c.Set6 || c.Set4 == c.Set6+PermSuffix || c.Set6 == c.Set4+PermSuffix {
		return fmt.Errorf("ipset: set names %q and %q collide", c.Set4, c.Set6)
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		return fmt.Errorf("ipset: batch size %d out of range 1-1000", c.BatchSize)
	}
	if c.Nadoo && c.NetNS != "" {
		return errors.New("ipset: nadoo writes only in the current network namespace; leave NetNS empty or Nadoo off")
	}
	return nil
}

// Firewall is the ipset backend. Its methods are safe for concurrent use;
// they are serialised.
type Firewall struct {
	cfg  Config
	log  *slog.Logger
	nsh  netns.NsHandle // -1 for the current namespace
	mu   sync.Mutex
	h    *netlink.Handle
	sock *nl.SocketHandle // for batched ADT messages
	w    writer
	// known holds, by set name, prefixes that may be in the set: those of
	// its last listing by inSet plus every one added since. Entries only
	// leave a set behind doorman's back (timeouts), so it stays a superset
	// while doorman is the set's only writer. It spares a restore that
	// comes in pages one listing of the other set per page; Init and List
	// drop it, which bounds its growth.
	known map[string]map[netip.Prefix]bool
}

var _ firewall.Firewall = (*Firewall)(nil)

// New opens netlink sockets in cfg.NetNS. It changes nothing in the kernel:
// call Init.
func New(cfg Config, log *slog.Logger) (*Firewall, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Firewall{cfg: cfg, log: log.With("component", "firewall/ipset"), nsh: netns.None(),
		known: map[string]map[netip.Prefix]bool{}}
	if cfg.NetNS != "" {
		h, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("ipset: open netns: %w", err)
		}
		f.nsh = h
	}
	h, err := netlink.NewHandleAt(f.nsh, unix.NETLINK_NETFILTER)
	if err != nil {
		f.closeNS()
		return nil, fmt.Errorf("ipset: netlink: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(f.nsh, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		f.closeNS()
		return nil, fmt.Errorf("ipset: netlink: %w", err)
	}
	f.h, f.sock = h, &nl.SocketHandle{Socket: s}
	f.w = &netlinkWriter{sock: f.sock}
	if cfg.Nadoo {
		w, err := newNadooWriter()
		if err != nil {
			f.Close()
			return nil, err
		}
		f.w = w
	}
	return f, nil
}

func (f *Firewall) closeNS() {
	if f.nsh.IsOpen() {
		f.nsh.Close()
	}
	f.nsh = netns.None()
}

// Close releases the sockets and the namespace handle; the kernel state
// stays.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.h != nil {
		f.h.Close()
		f.sock.Close()
		f.h = nil
	}
	f.closeNS()
	return nil
}

var errClosed = errors.New("ipset: firewall is closed")

func (f *Firewall) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ipset: %w", err)
	}
	f.mu.Lock()
	if f.h == nil {
		f.mu.Unlock()
		return errClosed
	}
	return nil
}

// set is one of the four sets.
type set struct {
	name string
	v6   bool
	perm bool
}

func (f *Firewall) sets() []set {
	return []set{
		{f.cfg.Set4, false, false}, {f.cfg.Set4 + PermSuffix, false, true},
		{f.cfg.Set6, true, false}, {f.cfg.Set6 + PermSuffix, true, true},
	}
}

// setFor returns the set an entry of that family and kind lives in, and the
// other set of the family (where it must not stay).
func (f *Firewall) setFor(v6, perm bool) (in, other set) {
	s := f.sets()
	i := 0
	if v6 {
		i = 2
	}
	if perm {
		return s[i+1], s[i]
	}
	return s[i], s[i+1]
}

// openNSFile returns the namespace file for running iptables, or nil for
// the current namespace.
func (f *Firewall) openNSFile() (*os.File, error) {
	if f.cfg.NetNS == "" {
		return nil, nil
	}
	return os.Open(f.cfg.NetNS)
}
