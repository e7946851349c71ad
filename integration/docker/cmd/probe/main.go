// Command probe is the phone, the attacker and the dialplan of the docker
// end-to-end tests. It runs inside a container of the compose network (so its
// packets have that container's source address) and sends SIP REGISTERs with
// package sipua; or, started in a server's network namespace
// (`docker run --network container:<asterisk>`), it runs AGI() against the
// local doorman as that server's dialplan would, with package agi. Each
// request prints one JSON line; the exit status says what happened, so
// `docker exec` callers need not parse free text.
//
//	probe idle                                   wait for SIGTERM (keeps the container up)
//	probe register -server IP:5060 -user 1001 -password pw1001 [-count N] [-timeout 1s] [-local IP:PORT]
//	probe agi 'agi://127.0.0.1:4573/dialLocal,1002,25,TtWw'
//
// Exit status of register: 0 every request was answered, 3 at least one got
// no answer (dropped), 1 any other error. Of agi: 0 when the session ran.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/agi"
	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// exitNoAnswer is the status when a request went unanswered.
const exitNoAnswer = 3

// Result is one REGISTER's outcome, printed as a JSON line.
type Result struct {
	Server string `json:"server"`
	User   string `json:"user"`
	Status int    `json:"status,omitempty"` // final SIP status; 0 when none came
	Error  string `json:"error,omitempty"`
	Millis int64  `json:"ms"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: probe idle | probe register -server IP:PORT -user U -password P [-count N] | probe agi APPDATA")
		return 1
	}
	switch args[0] {
	case "idle":
		<-ctx.Done()
		return 0
	case "register":
		return register(ctx, args[1:], stdout, stderr)
	case "agi":
		return runAGI(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "probe: unknown command %q\n", args[0])
	return 1
}

func register(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg sipua.Config
	fs.StringVar(&cfg.Server, "server", "", "registrar IP:port")
	fs.StringVar(&cfg.Transport, "transport", "udp", "udp or tcp")
	fs.StringVar(&cfg.LocalAddr, "local", "", "local IP:port (a fixed one keeps the same contact across runs)")
	fs.StringVar(&cfg.User, "user", "", "account")
	fs.StringVar(&cfg.Password, "password", "", "digest password (a wrong one plays the attacker)")
	fs.IntVar(&cfg.Expires, "expires", 3600, "registration lifetime in seconds")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Second, "wait this long for each response")
	count := fs.Int("count", 1, "REGISTERs to send, each in a new dialog")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *count < 1 {
		fmt.Fprintln(stderr, "probe: -count must be at least 1")
		return 1
	}
	phone, err := sipua.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "probe:", err)
		return 1
	}
	defer phone.Close()
	enc := json.NewEncoder(stdout)
	code := 0
	for range *count {
		phone.NewDialog()
		start := time.Now()
		res := Result{Server: cfg.Server, User: cfg.User}
		r, err := phone.Register(ctx)
		res.Millis = time.Since(start).Milliseconds()
		switch {
		case errors.Is(err, sipua.ErrTimeout):
			res.Error = "no answer"
			code = exitNoAnswer
		case err != nil:
			res.Error = err.Error()
			if code == 0 {
				code = 1
			}
		default:
			res.Status = r.Status
		}
		_ = enc.Encode(res)
	}
	return code
}

// AGIResult is what the dialplan saw after AGI(), printed as JSON.
type AGIResult struct {
	Status   string            `json:"status"` // AGISTATUS
	Vars     map[string]string `json:"vars"`   // variables the AGI server set
	Commands []string          `json:"commands"`
	Error    string            `json:"error,omitempty"`
}

func runAGI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "probe: agi takes one argument, AGI()'s data, e.g. agi://127.0.0.1:4573/dialLocal,1002,25,TtWw")
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := agi.DialApp(ctx, args[0], agi.Channel{Extension: "7000"})
	out := AGIResult{Vars: map[string]string{}}
	if r != nil {
		out.Status, out.Commands = r.Status, r.Commands
		for _, v := range r.Set {
			out.Vars[v.Name] = v.Value
		}
	}
	code := 0
	if err != nil {
		out.Error = err.Error()
		code = 1
	}
	_ = json.NewEncoder(stdout).Encode(out)
	return code
}
