// Package nft is doorman's nftables backend of firewall.Firewall. It owns one
// `inet` table (default "doorman") and nothing else: a base chain at the
// prerouting hook with priority raw (-300), policy accept, so banned sources
// are dropped before conntrack and before any other rule can accept them; and
// one ban set per address family and prefix length, each with one drop rule.
// It talks to the kernel over netlink (github.com/google/nftables), never by
// running `nft`.
//
// # Why one hash set per prefix length, not an interval set
//
// IPv6 sources are banned by prefix (/64 by default, any length allowed) and
// an operator may ban an IPv4 network too. An `interval` set could hold every
// length in one set, but the kernel's interval backend (rbtree) rejects
// overlapping elements: a /32 ban inside an already banned /24 would fail the
// whole netlink batch, and the two bans could not keep separate timeouts.
// Instead each (family, length) pair gets a plain hash set of network
// addresses, e.g. `ban6_64`, and its rule masks the source before the lookup:
//
//	meta nfproto ipv6 ip6 saddr & ffff:ffff:ffff:ffff:: @ban6_64 counter drop
//
// Hash sets with `flags timeout` are the kernel's most used set type (fail2ban
// and crowdsec use them), overlapping bans coexist with their own timeouts,
// and a packet costs one hash lookup per length in use (normally two: ban4_32
// and ban6_64). Sets for other lengths are created on the first Add that
// needs them and recreated by every later Init.
//
// Sets have `flags timeout` and no set-level default timeout, so an element
// added without a timeout is permanent (google/nftables omits a zero element
// timeout, so a set default would silently apply to permanent bans).
package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/asterisksupport/doorman/firewall"
)

// Defaults of Config.
const (
	DefaultTable         = "doorman"
	DefaultChain         = "prerouting"
	DefaultSet4          = "ban4"
	DefaultSet6          = "ban6"
	DefaultIPv6PrefixLen = 64
	DefaultBatchSize     = 10000
	// sndbuf is the netlink socket's send buffer: a batch is one sendmsg
	// (10,000 IPv6 elements, added, deleted and re-added, take about 1.2 MB).
	sndbuf = 8 << 20
)

// Config says where and under which names the backend keeps its state.
type Config struct {
	// Table is the name of doorman's own inet table (default "doorman").
	Table string
	// NetNS is the path of a network namespace file (e.g. /run/netns/x), or
	// "" for the namespace the process runs in.
	NetNS string
	// Set4 and Set6 name the ban sets: "<Set4>_<len>", "<Set6>_<len>"
	// (defaults "ban4", "ban6", giving ban4_32 and ban6_64).
	Set4, Set6 string
	// IPv6PrefixLen is the IPv6 ban length whose set Init creates up front
	// (default 64). Other lengths work too; their sets appear on first use.
	IPv6PrefixLen int
	// BatchSize is how many entries go into one netlink batch, i.e. one
	// kernel transaction (default 10,000, at most 20,000).
	BatchSize int
}

var namePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,24}$`)

func (c *Config) setDefaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Set4 == "" {
		c.Set4 = DefaultSet4
	}
	if c.Set6 == "" {
		c.Set6 = DefaultSet6
	}
	if c.IPv6PrefixLen == 0 {
		c.IPv6PrefixLen = DefaultIPv6PrefixLen
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
}

func (c *Config) validate() error {
	for what, name := range map[string]string{"table": c.Table, "set4": c.Set4, "set6": c.Set6} {
		if !namePattern.MatchString(name) {
			return fmt.Errorf("nft: bad %s name %q: want a letter then up to 24 letters, digits, _ or -", what, name)
		}
	}
	if c.Set4 == c.Set6 {
		return fmt.Errorf("nft: set4 and set6 must differ (both %q)", c.Set4)
	}
	if c.IPv6PrefixLen < 1 || c.IPv6PrefixLen > 128 {
		return fmt.Errorf("nft: ipv6 prefix length %d out of range 1-128", c.IPv6PrefixLen)
	}
	if c.BatchSize < 1 || c.BatchSize > 20000 {
		return fmt.Errorf("nft: batch size %d out of range 1-20000", c.BatchSize)
	}
	return nil
}

// Firewall is the nftables backend. Its methods are safe for concurrent use;
// they are serialised on one lasting netlink socket.
type Firewall struct {
	cfg  Config
	log  *slog.Logger
	nsf  *os.File // kept open: the netlink socket's namespace
	mu   sync.Mutex
	conn *nftables.Conn
	// lens holds the prefix lengths whose sets Init keeps, per family (4, 6).
	lens map[int]map[int]bool
	// bound is an upper bound of each set's element count, by set name,
	// where known; it only chooses how Add writes (see present).
	bound map[string]int
	// known holds, by set name, keys that may be in the set (a superset:
	// every key added since the set was created empty or last read),
	// kept while large adds follow each other, as the pages of a restore
	// do; see present.
	known map[string]map[netip.Addr]bool
}

var _ firewall.Firewall = (*Firewall)(nil)

// New opens a netlink connection in cfg.NetNS. It changes nothing in the
// kernel: call Init.
func New(cfg Config, log *slog.Logger) (*Firewall, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Firewall{cfg: cfg, log: log.With("component", "firewall/nft", "table", cfg.Table),
		lens: map[int]map[int]bool{4: {32: true}, 6: {cfg.IPv6PrefixLen: true}}, bound: map[string]int{}, known: map[string]map[netip.Addr]bool{}}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigSendBuffer)}
	if cfg.NetNS != "" {
		nsf, err := os.Open(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nft: open netns: %w", err)
		}
		f.nsf = nsf
		opts = append(opts, nftables.WithNetNSFd(int(nsf.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		if f.nsf != nil {
			f.nsf.Close()
		}
		return nil, fmt.Errorf("nft: netlink: %w", err)
	}
	f.conn = conn
	return f, nil
}

// Close releases the netlink socket and the namespace file; the kernel
// state stays.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.conn != nil {
		errs = append(errs, f.conn.CloseLasting())
		f.conn = nil
	}
	if f.nsf != nil {
		errs = append(errs, f.nsf.Close())
		f.nsf = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nft: close: %w", err)
	}
	return nil
}

var errClosed = errors.New("nft: firewall is closed")

// lock takes the mutex and checks the context and that Close was not called.
func (f *Firewall) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	f.mu.Lock()
	if f.conn == nil {
		f.mu.Unlock()
		return errClosed
	}
	return nil
}

// bigSendBuffer raises the socket's send buffer past net.core.wmem_max
// (SO_SNDBUFFORCE, allowed with CAP_NET_ADMIN, which nftables needs anyway),
// falling back to what SO_SNDBUF allows.
func bigSendBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf)
		})
		if err == nil && serr == nil {
			return nil
		}
	}
	_ = c.SetWriteBuffer(sndbuf) // best effort: smaller batches still fit
	return nil
}
