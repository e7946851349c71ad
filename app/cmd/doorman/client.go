package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/asterisksupport/doorman/app/api"
	"github.com/asterisksupport/doorman/app/blf"
	"github.com/asterisksupport/doorman/app/config"
	"github.com/asterisksupport/doorman/app/finder"
)

// apiClient talks to the local agent's HTTP API.
type apiClient struct {
	base, token string
	http        *http.Client
}

// clientFlags adds -c, -api and -token to fs and returns a constructor that
// resolves them: flag, then environment, then the config file.
func clientFlags(fs *flag.FlagSet) func() (*apiClient, error) {
	cfgPath := fs.String("c", "/etc/doorman/doorman.yaml", "config file (for api.listen and the token)")
	base := fs.String("api", os.Getenv("DOORMAN_API"), "agent API address, e.g. 127.0.0.1:9485")
	token := fs.String("token", "", "API token (default $DOORMAN_TOKEN or the config's)")
	return func() (*apiClient, error) {
		c := &apiClient{base: *base, token: *token, http: &http.Client{Timeout: 10 * time.Second}}
		if c.token == "" {
			c.token = os.Getenv("DOORMAN_TOKEN")
		}
		if c.base == "" || c.token == "" {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return nil, fmt.Errorf("no -api/-token given and %w", err)
			}
			if c.base == "" {
				c.base = cfg.API.Listen
			}
			if c.token == "" {
				c.token = cfg.API.Token
			}
		}
		if !strings.Contains(c.base, "://") {
			c.base = "http://" + c.base
		}
		return c, nil
	}
}

func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("agent API: %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("agent API: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func runBans(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"list"}
	}
	fs := flag.NewFlagSet("bans "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	dur := fs.Duration("for", 0, "ban duration (0 = permanent)")
	reason := fs.String("reason", "manual", "reason recorded with the ban")
	if err := fs.Parse(reorder(args[1:])); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		var bans []api.BanView
		if err := c.do(ctx, "GET", "/api/bans", nil, &bans); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tKIND\tTIME LEFT\tSTRIKES\tSERVER\tREASON")
		for _, b := range bans {
			kind, left := "temporary", b.TimeLeft
			if b.Permanent {
				kind, left = "permanent", "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", b.Prefix, kind, left, b.Strikes, b.Server, b.Reason)
		}
		return tw.Flush()
	case "ban", "unban":
		if fs.NArg() != 1 {
			return fmt.Errorf("bans %s: want one address or prefix", args[0])
		}
		p, err := api.ParsePrefix(fs.Arg(0))
		if err != nil {
			return err
		}
		if args[0] == "unban" {
			if err := c.do(ctx, "DELETE", "/api/bans/"+p.String(), nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "unbanned", p)
			return nil
		}
		req := api.BanRequest{Address: p.String(), Reason: *reason}
		if *dur > 0 {
			req.Duration = dur.String()
		}
		if err := c.do(ctx, "POST", "/api/bans", req, nil); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "banned", p)
		return nil
	}
	return fmt.Errorf("bans: unknown action %q (list, ban, unban)", args[0])
}

func runWhereis(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("whereis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	account := fs.String("account", "", "tenant account that scopes the extension")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("whereis: want one extension")
	}
	c, err := client()
	if err != nil {
		return err
	}
	var locs []finder.Location
	q := ""
	if *account != "" {
		q = "?account=" + url.QueryEscape(*account)
	}
	if err := c.do(ctx, "GET", "/api/whereis/"+url.PathEscape(fs.Arg(0))+q, nil, &locs); err != nil {
		return err
	}
	return finder.FormatLocations(stdout, fs.Arg(0), locs, time.Now())
}

func runLamps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hints := len(args) > 0 && args[0] == "hints"
	if hints {
		args = args[1:]
	}
	fs := flag.NewFlagSet("lamps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/api/lamps"
	var lamps []blf.Lamp
	if err := c.do(ctx, "GET", path, nil, &lamps); err != nil {
		return err
	}
	if hints {
		return blf.WriteHints(stdout, lamps)
	}
	return blf.WriteLamps(stdout, lamps)
}

// reorder moves flags before positional arguments, so `bans ban 1.2.3.4 -for 1h` works.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
