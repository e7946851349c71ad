// Command doorman guards and joins a cluster of Asterisk servers: run
// `doorman agent` beside each server; the other subcommands talk to the
// local agent's HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/asterisksupport/doorman/app/protowarn" // first: hides a harmless init-time warning
)

const usage = `doorman: intrusion monitor, extension finder and busy lamps for Asterisk clusters

Usage:
  doorman agent   [-c doorman.yaml]                 run the agent beside the local Asterisk
  doorman config  check|print [-c doorman.yaml]     validate, or print with secrets redacted
  doorman bans    list                              cluster-wide bans
  doorman bans    ban ADDR[/LEN] [-for 1h] [-reason R]   ban (no -for: permanent)
  doorman bans    unban ADDR[/LEN]
  doorman whereis EXT [-account A]                  where an extension is registered
  doorman lamps   [hints]                           lamp states per server; hint lines
  doorman version

The client subcommands reach the agent at -api (default from the config's
api.listen, or $DOORMAN_API) with the token from the config, or $DOORMAN_TOKEN.
`

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "doorman:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "agent":
		return runAgent(ctx, args[1:], stderr)
	case "config":
		return runConfig(args[1:], stdout, stderr)
	case "bans":
		return runBans(ctx, args[1:], stdout, stderr)
	case "whereis":
		return runWhereis(ctx, args[1:], stdout, stderr)
	case "lamps":
		return runLamps(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "doorman", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}
