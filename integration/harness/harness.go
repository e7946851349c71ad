// Package harness builds doorman's multi-server test bed: network namespaces
// as separate hosts joined by a bridge, with real processes (redis-server,
// asterisk-sim, doorman agents, fail2ban) started inside them and torn down
// when the test ends, even when it fails. LoadTargets reads the file that
// points the end-to-end suite at real Asterisk servers instead.
//
// Addresses come from benchmarking ranges that exist only inside the bed
// (198.18.0.0/24 and fd18::/64); no packet leaves the machine.
package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips t with a clear message when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, nftables/ipset sets and runs servers inside them (run as root or via `sudo task integration`)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (`ip`): run .ci/setup.sh")
	}
}

// Bed is one test bed: a hub namespace with a bridge, and hosts on it.
type Bed struct {
	t     testing.TB
	id    string
	hub   string
	mu    sync.Mutex
	hosts []*Host
}

// Host is one simulated machine: a network namespace with one interface on
// the bed's bridge.
type Host struct {
	bed  *Bed
	Name string
	NS   string // namespace name for `ip netns exec`
	IPv4 netip.Addr
	IPv6 netip.Addr
}

// New creates an empty bed; everything is removed in t.Cleanup.
func New(t testing.TB) *Bed {
	t.Helper()
	RequireRoot(t)
	b := &Bed{t: t, id: randomID()}
	b.hub = "dmh" + b.id
	b.must("ip", "netns", "add", b.hub)
	t.Cleanup(b.teardown)
	b.must("ip", "-n", b.hub, "link", "add", "br0", "type", "bridge")
	b.must("ip", "-n", b.hub, "link", "set", "br0", "up")
	b.must("ip", "-n", b.hub, "link", "set", "lo", "up")
	return b
}

// AddHost adds a host with the next free addresses on the bridge.
func (b *Bed) AddHost(name string) *Host {
	b.t.Helper()
	b.mu.Lock()
	n := len(b.hosts) + 1
	b.mu.Unlock()
	h := &Host{
		bed:  b,
		Name: name,
		NS:   fmt.Sprintf("dm%s%d", b.id, n),
		IPv4: netip.AddrFrom4([4]byte{198, 18, 0, byte(n)}),
		IPv6: netip.MustParseAddr(fmt.Sprintf("fd18::%x", n)),
	}
	peer := fmt.Sprintf("v%d", n)
	b.must("ip", "netns", "add", h.NS)
	b.mu.Lock()
	b.hosts = append(b.hosts, h)
	b.mu.Unlock()
	b.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	b.must("ip", "-n", b.hub, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	b.must("ip", "-n", b.hub, "link", "set", peer, "master", "br0", "up")
	// No duplicate address detection: IPv6 must be usable at once.
	b.must("ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	b.must("ip", "-n", h.NS, "addr", "add", h.IPv4.String()+"/24", "dev", "eth0")
	b.must("ip", "-n", h.NS, "addr", "add", h.IPv6.String()+"/64", "dev", "eth0", "nodad")
	b.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
	return h
}

// AddAddr gives h one more address (e.g. a second attacker source in the
// same IPv6 /64).
func (h *Host) AddAddr(a netip.Addr) {
	bits := 24
	if a.Is6() {
		bits = 64
	}
	h.bed.must("ip", "-n", h.NS, "addr", "add", netip.PrefixFrom(a, bits).String(), "dev", "eth0", "nodad")
}

// NSPath is the namespace's bind-mount path, for netlink clients.
func (h *Host) NSPath() string { return filepath.Join("/run/netns", h.NS) }

// Run runs a command inside h and returns its combined output.
func (h *Host) Run(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("harness: %s in %s: %w: %s", strings.Join(args, " "), h.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(args ...string) string {
	h.bed.t.Helper()
	out, err := h.Run(args...)
	if err != nil {
		h.bed.t.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into h's namespace. Sockets created in
// fn stay in that namespace after Do returns.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it may be left in the wrong
		// namespace, so the runtime must discard it when this goroutine ends.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(h.NSPath())
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("harness: setns %s: %w", h.NS, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func (b *Bed) must(args ...string) {
	b.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		b.t.Fatalf("harness: %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (b *Bed) teardown() {
	b.mu.Lock()
	hosts := b.hosts
	b.mu.Unlock()
	for _, h := range hosts {
		// Kill whatever still runs in the namespace before removing it.
		if out, err := exec.Command("ip", "netns", "pids", h.NS).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	}
	_ = exec.Command("ip", "netns", "del", b.hub).Run()
}

func randomID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
