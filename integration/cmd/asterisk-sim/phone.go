package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// exitDropped is the exit status when a request got no response at all
// (the registrar is down or a firewall drops the phone).
const exitDropped = 3

// errDropped carries exitDropped out of run.
var errDropped = errors.New("no response")

// phone runs "the phone" or "the attacker" as a process, so a harness can
// start it inside a network namespace:
//
//	asterisk-sim phone -server 10.0.0.1:5060 -user 1001 -password pw1001 -local 10.0.0.2:5070 -hold
//	asterisk-sim phone -server 10.0.0.1:5060 -user 1001 -password wrong -count 5 -interval 200ms
//
// Each attempt prints "<user> register -> <code> <reason>" or "<user> register -> timeout".
func phone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("asterisk-sim phone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg sipua.Config
	fs.StringVar(&cfg.Server, "server", "127.0.0.1:5060", "registrar host:port")
	fs.StringVar(&cfg.Transport, "transport", "udp", "udp or tcp")
	fs.StringVar(&cfg.LocalAddr, "local", "", "local address to bind, e.g. 10.0.0.2:5070")
	fs.StringVar(&cfg.User, "user", "1001", "account")
	fs.StringVar(&cfg.Password, "password", "", "digest password (a wrong one plays the attacker)")
	fs.StringVar(&cfg.Domain, "domain", "", "From/To host (default: the server's host)")
	fs.StringVar(&cfg.UserAgent, "user-agent", "sipprobe/0.1", "User-Agent header")
	fs.IntVar(&cfg.Expires, "expires", 300, "registration expiry in seconds")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Second, "wait for each response")
	count := fs.Int("count", 1, "number of REGISTER attempts")
	interval := fs.Duration("interval", 0, "pause between attempts")
	newDialog := fs.Bool("new-call-id", false, "use a new Call-ID for every attempt (an attacker's habit)")
	unregister := fs.Bool("unregister", false, "unregister (Expires: 0) after the last attempt")
	hold := fs.Bool("hold", false, "stay registered (answering qualify OPTIONS), refreshing at half the expiry, and unregister when stopped")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := sipua.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(stdout, "phone %s bound to %s\n", cfg.User, p.LocalAddr())
	dropped := false
	attempt := func(what string, f func(context.Context) (*sipua.Response, error)) *sipua.Response {
		r, err := f(ctx)
		switch {
		case errors.Is(err, sipua.ErrTimeout):
			dropped = true
			fmt.Fprintf(stdout, "%s %s -> timeout\n", cfg.User, what)
		case err != nil:
			dropped = true
			fmt.Fprintf(stdout, "%s %s -> error: %v\n", cfg.User, what, err)
		default:
			fmt.Fprintf(stdout, "%s %s -> %d %s\n", cfg.User, what, r.Status, r.Reason)
		}
		return r
	}
	for i := 0; i < *count && ctx.Err() == nil; i++ {
		if i > 0 {
			if *newDialog {
				p.NewDialog()
			}
			sleep(ctx, *interval)
		}
		attempt("register", p.Register)
	}
	if *hold {
		for ctx.Err() == nil {
			if err := p.Listen(ctx, time.Duration(cfg.Expires)*time.Second/2); err != nil {
				fmt.Fprintf(stdout, "%s listen -> error: %v\n", cfg.User, err)
				sleep(ctx, time.Second)
			}
			if ctx.Err() == nil {
				attempt("register", p.Register)
			}
		}
		// Unregister with a fresh context: ours is cancelled.
		uctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout*2)
		defer cancel()
		ctx = uctx
		*unregister = true
	}
	if *unregister {
		attempt("unregister", p.Unregister)
	}
	if dropped {
		return errDropped
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
