// Package finder owns doorman's Extension Finder: it mirrors every PJSIP
// registration of the local Asterisk into the shared store (Tracker: AMI
// ContactStatus events plus full PJSIPShowContacts resyncs, and a heartbeat
// that keeps this server a location while its Asterisk answers), and answers
// Asterisk's FastAGI dialLocal with a dialString that reaches an extension
// wherever it is registered (AGIServer). Whereis serves the CLI and API.
package finder

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// Location is one place an extension is registered.
type Location struct {
	Server     string    `json:"server"`      // registering server (systemname)
	ServerAddr string    `json:"server_addr"` // its SIP address for inter-server calls
	Endpoint   string    `json:"endpoint"`
	AOR        string    `json:"aor"`
	Contact    string    `json:"contact"`          // contact URI
	Source     string    `json:"source,omitempty"` // as reported by Asterisk (Via), if known
	UserAgent  string    `json:"user_agent,omitempty"`
	Expires    time.Time `json:"expires"` // store expiry: registration expiry plus expiry_grace
	Seen       time.Time `json:"seen"`    // when doorman first saw the contact
}

// Whereis returns where ext (scoped by account through EndpointTemplate) is
// registered on live servers, sorted by server then contact. An unknown
// extension gives an empty list, not an error.
func (c Config) Whereis(ctx context.Context, store state.Registrations, ext, account string) ([]Location, error) {
	tmpl, err := parseTemplate(c.EndpointTemplate)
	if err != nil {
		return nil, fmt.Errorf("finder: endpoint_template: %w", err)
	}
	if !validName(ext) {
		return nil, fmt.Errorf("finder: extension %s has characters outside A-Z a-z 0-9 . _ + -", quoteSafe(ext))
	}
	if account != "" && !validName(account) {
		return nil, fmt.Errorf("finder: account %s has characters outside A-Z a-z 0-9 . _ + -", quoteSafe(account))
	}
	if tmpl.usesAcct && account == "" {
		return nil, fmt.Errorf("finder: endpoint_template %s needs an account (--account)", c.EndpointTemplate)
	}
	regs, err := store.LookupAOR(ctx, tmpl.name(account, ext))
	if err != nil {
		return nil, fmt.Errorf("finder: lookup %s: %w", ext, err)
	}
	locs := make([]Location, 0, len(regs))
	for _, r := range regs {
		locs = append(locs, Location{Server: r.Server, ServerAddr: r.ServerAddr, Endpoint: r.Endpoint, AOR: r.AOR,
			Contact: r.Contact, Source: r.Source, UserAgent: r.UserAgent, Expires: r.Expires, Seen: r.Updated})
	}
	slices.SortFunc(locs, func(a, b Location) int {
		if n := strings.Compare(a.Server, b.Server); n != 0 {
			return n
		}
		return strings.Compare(a.Contact, b.Contact)
	})
	return locs, nil
}

// FormatLocations writes locs as a table for `doorman whereis`: server,
// its SIP address, contact, source, age (since first seen), expiry (date
// and time left) and user agent.
func FormatLocations(w io.Writer, ext string, locs []Location, now time.Time) error {
	if len(locs) == 0 {
		_, err := fmt.Fprintf(w, "%s is registered nowhere (no live server has a contact for it)\n", ext)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tSIP ADDRESS\tCONTACT\tSOURCE\tAGE\tEXPIRES\tUSER AGENT")
	for _, l := range locs {
		exp := "-"
		if !l.Expires.IsZero() {
			exp = l.Expires.Format("2006-01-02 15:04:05") + " (expired)"
			if left := l.Expires.Sub(now); left >= 0 {
				exp = l.Expires.Format("2006-01-02 15:04:05") + " (in " + span(left, false) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Server, dash(l.ServerAddr), l.Contact, dash(l.Source),
			span(now.Sub(l.Seen), l.Seen.IsZero()), exp, dash(l.UserAgent))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// span renders a duration to the second; unknown times show as "-".
func span(d time.Duration, unknown bool) string {
	if unknown {
		return "-"
	}
	if d < 0 {
		return "expired"
	}
	return d.Truncate(time.Second).String()
}
