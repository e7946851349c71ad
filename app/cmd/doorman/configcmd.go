package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/asterisksupport/doorman/app/config"
)

func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("config: want check or print")
	}
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/doorman/doorman.yaml", "config file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	switch args[0] {
	case "check":
		fmt.Fprintln(stdout, *path+": ok")
		return nil
	case "print":
		b, err := cfg.Redacted()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	return fmt.Errorf("config: unknown action %q (check, print)", args[0])
}
