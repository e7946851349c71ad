package ipset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ruleSpec is the rule for one set, without the -C/-I/-D verb.
func ruleSpec(s set) []string {
	return []string{"PREROUTING", "-m", "set", "--match-set", s.name, "src",
		"-m", "comment", "--comment", "doorman", "-j", "DROP"}
}

func (f *Firewall) iptables(s set) string {
	if s.v6 {
		return f.cfg.Ip6tables
	}
	return f.cfg.Iptables
}

// errNoRule is what `iptables -C` says with exit status 1.
var errNoRule = errors.New("rule not present")

// runRule runs `<iptables> -w -t raw <verb> <spec>` in the backend's
// namespace. Exit status 1 of -C means "no such rule" (errNoRule).
func (f *Firewall) runRule(ctx context.Context, verb string, s set) error {
	args := append([]string{"-w", "-t", "raw", verb}, ruleSpec(s)...)
	cmd := exec.CommandContext(ctx, f.iptables(s), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := f.inNetNS(cmd.Run)
	var exit *exec.ExitError
	if verb == "-C" && errors.As(err, &exit) && exit.ExitCode() == 1 {
		return errNoRule
	}
	if err != nil {
		return fmt.Errorf("ipset: %s %s: %w: %s", f.iptables(s), strings.Join(args, " "), err,
			strings.TrimSpace(out.String()))
	}
	return nil
}

// ensureRule inserts the rule at the top of raw PREROUTING unless present.
func (f *Firewall) ensureRule(ctx context.Context, s set) (added bool, err error) {
	switch err := f.runRule(ctx, "-C", s); {
	case err == nil:
		return false, nil
	case !errors.Is(err, errNoRule):
		return false, err
	}
	return true, f.runRule(ctx, "-I", s)
}

// inNetNS runs fn on an OS thread switched into Config.NetNS, so that the
// processes it starts (which inherit the thread's namespace) run there.
func (f *Firewall) inNetNS(fn func() error) error {
	target, err := f.openNSFile()
	if err != nil {
		return fmt.Errorf("ipset: open netns: %w", err)
	}
	if target == nil {
		return fn()
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("ipset: open own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("ipset: setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("ipset: setns back: %w", err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
