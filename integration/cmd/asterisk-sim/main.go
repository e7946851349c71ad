// Command asterisk-sim runs the protocol-faithful Asterisk 22 simulator of
// package asterisksim: AMI, a PJSIP-like registrar (UDP and TCP), the
// security log, ARI (when built in) and an HTTP control API.
//
//	asterisk-sim -system-name aim-a -entity-id 02:00:00:00:00:0a \
//	    -ami 127.0.0.1:5038 -sip 127.0.0.1:5060 -http 127.0.0.1:8088 -control 127.0.0.1:8089 \
//	    -endpoint 1001:pw1001 -endpoint 1002:pw1002 -ami-user aim:aimsecret -ari-user aim:aimsecret \
//	    -security-log /tmp/aim-a/security -messages-log /tmp/aim-a/messages -state-dir /tmp/aim-a
//	asterisk-sim demo   # two servers, aim-a on 127.0.0.1 and aim-b on 127.0.0.2
//	asterisk-sim phone -server 127.0.0.1:5060 -user 1001 -password pw1001 -hold   # a phone (see phone.go)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "asterisk-sim:", err)
		if errors.Is(err, errDropped) {
			os.Exit(exitDropped)
		}
		os.Exit(1)
	}
}

// pairs is a repeatable "name:value" flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(len(p), " entries") }

func (p pairs) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || k == "" {
		return fmt.Errorf("want name:value, got %q", v)
	}
	p[k] = val
	return nil
}

// lists is a repeatable name:value flag keeping every value.
type lists map[string][]string

func (l lists) String() string { return fmt.Sprint(len(l), " entries") }

func (l lists) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || k == "" {
		return fmt.Errorf("want name:value, got %q", v)
	}
	l[k] = append(l[k], val)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return demo(ctx, args[1:], stdout, stderr)
		case "phone":
			return phone(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("asterisk-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := asterisksim.Config{Endpoints: pairs{}, AMIUsers: pairs{}, ARIUsers: pairs{}, AMIEventFilters: lists{}}
	fs.StringVar(&cfg.SystemName, "system-name", "aim-a", "asterisk.conf systemname (the contacts' RegServer)")
	fs.StringVar(&cfg.EntityID, "entity-id", "02:00:00:00:00:0a", "asterisk.conf entityid")
	fs.StringVar(&cfg.AMIAddr, "ami", "127.0.0.1:5038", "AMI TCP address (empty disables)")
	fs.StringVar(&cfg.SIPAddr, "sip", "127.0.0.1:5060", "SIP UDP+TCP address (empty disables)")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8088", "ARI HTTP address (empty disables)")
	fs.StringVar(&cfg.ControlAddr, "control", "", "control API address, e.g. 127.0.0.1:8089 (empty disables)")
	fs.Var(pairs(cfg.Endpoints), "endpoint", "PJSIP endpoint name:password (repeatable)")
	fs.Var(pairs(cfg.AMIUsers), "ami-user", "AMI user:secret (repeatable)")
	fs.Var(pairs(cfg.ARIUsers), "ari-user", "ARI user:password (repeatable)")
	fs.Var(lists(cfg.AMIEventFilters), "ami-eventfilter",
		"AMI user:criteria of a manager.conf eventfilter(criteria) =, e.g. doorman:action(exclude),name(ChallengeSent) (repeatable)")
	fs.StringVar(&cfg.Realm, "realm", "asterisk", "SIP digest realm")
	fs.StringVar(&cfg.SecurityLogPath, "security-log", "", "security log file (logger.conf security => security)")
	fs.StringVar(&cfg.MessagesLogPath, "messages-log", "", "messages log file (NOTICE lines of failed logins)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory where Stasis: device states persist")
	fs.DurationVar(&cfg.AuthFailDelay, "auth-fail-delay", time.Second, "delay before a failed AMI login reply")
	fs.BoolVar(&cfg.PlainHints, "plain-hints", false, "hints PJSIP/<ext> instead of PJSIP/<ext>&Stasis:<ext>")
	fs.BoolVar(&cfg.RemoveExisting, "remove-existing", false, "a new contact replaces the registered one (else 403)")
	fs.BoolVar(&cfg.TraceDevices, "trace-devices", false, "record every device state stored, with its time, taken by POST /control/devicetrace")
	fs.DurationVar(&cfg.QualifyFrequency, "qualify", 0, "qualify contacts with OPTIONS this often (0: NonQualified)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints["1001"], cfg.Endpoints["1002"] = "pw1001", "pw1002"
	}
	if len(cfg.AMIUsers) == 0 {
		cfg.AMIUsers["aim"] = "aimsecret"
	}
	if len(cfg.ARIUsers) == 0 {
		cfg.ARIUsers["aim"] = "aimsecret"
	}
	log := newLogger(stderr, *verbose)
	sims, err := startAll(ctx, log, cfg)
	if err != nil {
		return err
	}
	printAddrs(stdout, sims)
	<-ctx.Done()
	return closeAll(sims)
}

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("asterisk-sim demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "asterisk-sim-demo"), "state and log directory")
	delay := fs.Duration("auth-fail-delay", time.Second, "delay before a failed AMI login reply")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := func(name, host, id string) asterisksim.Config {
		d := filepath.Join(*dir, name)
		return asterisksim.Config{
			SystemName: name, EntityID: id,
			AMIAddr: host + ":5038", SIPAddr: host + ":5060", HTTPAddr: host + ":8088", ControlAddr: host + ":8089",
			Endpoints:       map[string]string{"1001": "pw1001", "1002": "pw1002", "1003": "pw1003", "1004": "pw1004"},
			AMIUsers:        map[string]string{"aim": "aimsecret"},
			ARIUsers:        map[string]string{"aim": "aimsecret"},
			SecurityLogPath: filepath.Join(d, "security"), MessagesLogPath: filepath.Join(d, "messages"),
			StateDir: d, AuthFailDelay: *delay,
		}
	}
	cfgs := []asterisksim.Config{base("aim-a", "127.0.0.1", "02:00:00:00:00:0a"), base("aim-b", "127.0.0.2", "02:00:00:00:00:0b")}
	for _, c := range cfgs {
		if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
			return err
		}
	}
	sims, err := startAll(ctx, newLogger(stderr, *verbose), cfgs...)
	if err != nil {
		return err
	}
	printAddrs(stdout, sims)
	fmt.Fprintln(stdout, "endpoints 1001-1004 (password pw<ext>), AMI and ARI user aim/aimsecret; Ctrl-C stops")
	<-ctx.Done()
	return closeAll(sims)
}

func startAll(ctx context.Context, log *slog.Logger, cfgs ...asterisksim.Config) ([]*asterisksim.Sim, error) {
	var sims []*asterisksim.Sim
	for _, c := range cfgs {
		s, err := asterisksim.New(c, log)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", c.SystemName, err), closeAll(sims))
		}
		sims = append(sims, s)
	}
	return sims, nil
}

func printAddrs(w io.Writer, sims []*asterisksim.Sim) {
	for _, s := range sims {
		c := s.Config()
		fmt.Fprintf(w, "%s (entity %s): AMI %s  SIP udp+tcp %s  ARI %s  control %s  security log %s\n",
			c.SystemName, c.EntityID, orNone(s.AMIAddr()), orNone(s.SIPAddr()), orNone(s.HTTPAddr()), orNone(s.ControlAddr()), orNone(c.SecurityLogPath))
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func closeAll(sims []*asterisksim.Sim) error {
	var errs []error
	for _, s := range sims {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}
