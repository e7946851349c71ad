package finder

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/asterisksupport/doorman/app/state"
)

// Dial statuses set in the channel variable dialStatus.
const (
	StatusLocal          = "LOCAL"           // registered on the asking server only
	StatusRemote         = "REMOTE"          // registered on other servers only
	StatusFound          = "FOUND"           // registered here and on other servers
	StatusNotFound       = "NOTFOUND"        // registered nowhere (dialString is empty)
	StatusUnknownAccount = "UNKNOWN_ACCOUNT" // account not in Config.Accounts (dialString is empty)
	StatusInvalid        = "INVALID"         // bad arguments (dialString is empty)
	StatusError          = "ERROR"           // store unreachable or internal error (dialString is empty)
)

// Channel variables dialLocal sets.
const (
	VarDialString = "dialString"
	VarDialStatus = "dialStatus"
)

// request is a validated dialLocal call.
type request struct {
	exten, account, timeout, options string
}

// argError is a rejected argument; its text is safe to show Asterisk.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func argErrorf(format string, a ...any) error { return &argError{fmt.Sprintf(format, a...)} }

// parseArgs validates dialLocal's arguments (exten, timeout, options,
// account). Values are rejected, not repaired: a caller that passes
// "1001,,U(x)" must not get a call at all.
func (c *compiled) parseArgs(args []string) (request, error) {
	var r request
	get := func(i int) string {
		if i < len(args) {
			return strings.TrimSpace(args[i])
		}
		return ""
	}
	if len(args) > 4 {
		return r, argErrorf("too many arguments (%d): want exten, timeout, options, account", len(args))
	}
	r.exten, r.timeout, r.options, r.account = get(0), get(1), get(2), get(3)
	if r.exten == "" {
		return r, argErrorf("missing extension")
	}
	if !validName(r.exten) {
		return r, argErrorf("extension %s has characters outside A-Z a-z 0-9 . _ + -", quoteSafe(r.exten))
	}
	if r.timeout != "" {
		n, err := strconv.Atoi(r.timeout)
		if err != nil || n < 1 || n > c.cfg.MaxDialTimeout || strings.Trim(r.timeout, "0123456789") != "" {
			return r, argErrorf("timeout %s is not a number of seconds between 1 and %d", quoteSafe(r.timeout), c.cfg.MaxDialTimeout)
		}
		r.timeout = strconv.Itoa(n) // drop leading zeros
	}
	if len(r.options) > 32 {
		return r, argErrorf("options too long (%d characters)", len(r.options))
	}
	for i := 0; i < len(r.options); i++ {
		if !strings.ContainsRune(c.cfg.AllowedOptions, rune(r.options[i])) {
			return r, argErrorf("dial option %s not allowed (allowed: %s)", quoteSafe(r.options[i:i+1]), c.cfg.AllowedOptions)
		}
	}
	if r.account != "" && !validName(r.account) {
		return r, argErrorf("account %s has characters outside A-Z a-z 0-9 . _ + -", quoteSafe(r.account))
	}
	if c.tmpl.usesAcct && r.account == "" {
		return r, argErrorf("missing account (endpoint_template %s needs it)", c.cfg.EndpointTemplate)
	}
	return r, nil
}

// quoteSafe renders caller input for a message without quotes, backslashes
// or control characters (AGI VERBOSE takes a quoted string).
func quoteSafe(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '\'' {
			fmt.Fprintf(&b, "<%02x>", r)
			continue
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String()
}

// buildDial turns the live registrations of one name into a dial string and
// a status. Local registrations are dialed as PJSIP/<endpoint> once (Asterisk
// rings all its contacts); each other server once through the inter-server
// endpoint, whose far side dials its own contacts. Registrations whose stored
// fields are unsafe (the store is shared, so treat it as input) are skipped.
func (c *compiled) buildDial(r request, regs []state.Registration) (dial, status string, skipped int) {
	var local []string
	remote := map[string]string{} // server -> dial target
	for _, g := range regs {
		ep := g.Endpoint
		if ep == "" {
			ep = g.AOR
		}
		if !validName(ep) {
			skipped++
			continue
		}
		if g.Server == c.cfg.Server {
			t := "PJSIP/" + ep
			if !slices.Contains(local, t) {
				local = append(local, t)
			}
			continue
		}
		if _, ok := remote[g.Server]; ok {
			continue
		}
		if checkHostPort(g.ServerAddr) != nil || !validName(g.Server) {
			skipped++
			continue
		}
		remote[g.Server] = "PJSIP/" + c.cfg.InterserverEndpoint + "/sip:" + ep + "@" + g.ServerAddr
	}
	servers := make([]string, 0, len(remote))
	for s := range remote {
		servers = append(servers, s)
	}
	slices.Sort(servers)
	targets := local
	for _, s := range servers {
		targets = append(targets, remote[s])
	}
	switch {
	case len(targets) == 0:
		return "", StatusNotFound, skipped
	case len(local) > 0 && len(remote) > 0:
		status = StatusFound
	case len(local) > 0:
		status = StatusLocal
	default:
		status = StatusRemote
	}
	dial = strings.Join(targets, "&")
	if r.timeout != "" || r.options != "" {
		dial += "," + r.timeout
	}
	if r.options != "" {
		dial += "," + r.options
	}
	return dial, status, skipped
}
