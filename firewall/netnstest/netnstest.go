// Package netnstest owns the network namespaces that root-only tests create:
// a require-root guard, throw-away namespaces (optionally linked by a veth
// pair with IPv4 and IPv6 test addresses), running code inside a namespace,
// and waiting on a condition with a deadline instead of sleeping.
//
// Everything a test creates here is removed in t.Cleanup, also when the test
// fails. Addresses come from the documentation and ULA ranges (192.0.2.0/24,
// fd00::/8) and exist only inside the test's own namespaces.
package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace this package creates, so a
// leftover one is easy to recognise (`ip netns list`).
const NamePrefix = "firewall-"

// RequireRoot skips the test unless it runs as root, naming what needs root.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: " + why)
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("needs %s (iproute2): %v", tool, err)
		}
	}
}

// NS is one network namespace created for a test.
type NS struct {
	Name string // name given to `ip netns add`
	Path string // /run/netns/<Name>, to open or to pass as a backend's NetNS
}

// New creates a fresh network namespace with its loopback up, and deletes it
// when the test ends.
func New(tb testing.TB) *NS {
	tb.Helper()
	RequireRoot(tb, "creating network namespaces")
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("netnstest: random name: %v", err)
	}
	ns := &NS{Name: NamePrefix + hex.EncodeToString(b[:])}
	ns.Path = "/run/netns/" + ns.Name
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		tb.Fatalf("netnstest: ip netns add %s: %v: %s", ns.Name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			tb.Errorf("netnstest: ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.MustRun(tb, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command inside the namespace (`ip netns exec`) and returns its
// combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	full := append([]string{"netns", "exec", ns.Name, name}, args...)
	var out bytes.Buffer
	cmd := exec.Command("ip", full...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("netnstest: %s %s in %s: %w: %s",
			name, strings.Join(args, " "), ns.Name, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace and switches back
// afterwards. Sockets that fn opens stay in the namespace and may be used from
// any goroutine after Do returns.
func (ns *NS) Do(fn func() error) error {
	target, err := os.Open(ns.Path)
	if err != nil {
		return fmt.Errorf("netnstest: open %s: %w", ns.Path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away if switching back fails,
	// so no other goroutine ever runs in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netnstest: open own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netnstest: setns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			errc <- fmt.Errorf("netnstest: setns back from %s: %w", ns.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Eventually polls cond every 20 ms until it returns true or timeout passes,
// then fails the test with msg.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	if !WaitFor(timeout, cond) {
		tb.Fatalf("netnstest: after %v: "+format, append([]any{timeout}, args...)...)
	}
}

// WaitFor polls cond every 20 ms until it returns true (true) or timeout
// passes (false).
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
