package asterisksim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config describes one simulated Asterisk server.
type Config struct {
	SystemName string // asterisk.conf systemname, e.g. "aim-a"; also the contacts' RegServer
	EntityID   string // asterisk.conf entityid, e.g. "02:00:00:00:00:0a"
	Version    string // default "GIT-22-69535d4837"

	AMIAddr     string // TCP, e.g. "127.0.0.1:5038"; "" disables AMI
	SIPAddr     string // UDP and TCP on the same host:port, e.g. "127.0.0.1:5060"; "" disables SIP
	HTTPAddr    string // ARI (served by ari.NewHandler); "" disables HTTP
	ControlAddr string // optional HTTP control surface (see the package doc); "" disables it

	Endpoints map[string]string // endpoint/AOR/auth name -> password (max_contacts=1)
	AMIUsers  map[string]string // manager.conf user -> secret
	// AMIRead optionally restricts a user's read classes ("security,system,call,user").
	// A user not listed reads everything (read=all).
	AMIRead map[string]string
	// AMIWrite optionally restricts a user's write classes (for actions); default all.
	AMIWrite map[string]string
	// AMIEventFilters are a user's manager.conf event filters in the
	// structured syntax of Asterisk 22 (eventfilter(<criteria>) =), given as
	// the criteria, e.g. "action(exclude),name(ChallengeSent)". Only
	// action() and name() with an empty expression are simulated.
	AMIEventFilters map[string][]string
	ARIUsers        map[string]string // ari.conf user -> password
	Realm           string            // digest realm, default "asterisk"
	Context         string            // dialplan context of the hints, default "default"

	SecurityLogPath string // the logger.conf "security => security" file; "" disables it
	MessagesLogPath string // the "messages" log (only the NOTICE lines of failed logins); "" disables it
	StateDir        string // where Stasis: device states persist (like astdb); "" keeps them in memory only
	// TraceDevices records every device state the core stores, with the
	// time, for POST /control/devicetrace (which must be called, as
	// nothing else forgets them): a benchmark in other processes
	// reads there when a change was raised and when a Stasis: state was
	// applied.
	TraceDevices bool

	// AuthFailDelay is how long a failed AMI login waits before its reply
	// (Asterisk: 1 s). 0 means 1 s; a negative value means no delay.
	AuthFailDelay time.Duration
	// PlainHints makes every hint "PJSIP/<ext>" instead of "PJSIP/<ext>&Stasis:<ext>",
	// like the instance of the first captures.
	PlainHints bool
	// RemoveExisting replaces a registered contact by a new one (pjsip remove_existing=yes);
	// by default a second contact is refused with 403 as max_contacts=1 does.
	RemoveExisting bool
	// DefaultExpires, MinExpires and MaxExpires are the AOR's default_expiration (3600),
	// minimum_expiration (60) and maximum_expiration (7200).
	DefaultExpires, MinExpires, MaxExpires int
	// ExpiryCheck is how often expired contacts are pruned (default 1 s).
	ExpiryCheck time.Duration
	// QualifyFrequency makes every AOR qualify its contact with OPTIONS this
	// often (pjsip qualify_frequency); 0 leaves contacts NonQualified, as in
	// the captures. QualifyTimeout is qualify_timeout (default 3 s).
	QualifyFrequency, QualifyTimeout time.Duration
}

func (c *Config) applyDefaults() {
	if c.Version == "" {
		c.Version = "GIT-22-69535d4837"
	}
	if c.Realm == "" {
		c.Realm = "asterisk"
	}
	if c.Context == "" {
		c.Context = "default"
	}
	if c.AuthFailDelay == 0 {
		c.AuthFailDelay = time.Second
	}
	if c.AuthFailDelay < 0 {
		c.AuthFailDelay = 0
	}
	if c.DefaultExpires == 0 {
		c.DefaultExpires = 3600
	}
	if c.MinExpires == 0 {
		c.MinExpires = 60
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = 7200
	}
	if c.ExpiryCheck <= 0 {
		c.ExpiryCheck = time.Second
	}
	if c.QualifyTimeout <= 0 {
		c.QualifyTimeout = 3 * time.Second
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.SystemName == "" {
		errs = append(errs, errors.New("SystemName is empty"))
	}
	if c.EntityID == "" {
		errs = append(errs, errors.New("EntityID is empty"))
	}
	for name := range c.Endpoints {
		if name == "" || strings.ContainsAny(name, " /;@:&\r\n\t") {
			errs = append(errs, fmt.Errorf("endpoint name %q is not usable", name))
		}
	}
	for user := range c.AMIUsers {
		if user == "" || strings.ContainsAny(user, "\r\n") {
			errs = append(errs, fmt.Errorf("AMI user %q is not usable", user))
		}
	}
	for user, fs := range c.AMIEventFilters {
		for _, f := range fs {
			if _, err := parseEventFilter(f); err != nil {
				errs = append(errs, fmt.Errorf("AMI user %q: %w", user, err))
			}
		}
	}
	if c.MinExpires > c.MaxExpires {
		errs = append(errs, fmt.Errorf("MinExpires %d > MaxExpires %d", c.MinExpires, c.MaxExpires))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("asterisksim: config: %w", err)
	}
	return nil
}

// amiReadAllows reports whether user may read events of class.
func (c *Config) amiReadAllows(user, class string) bool { return permits(c.AMIRead, user, class) }

// eventFilter is one structured manager.conf eventfilter.
type eventFilter struct {
	exclude bool
	name    string
}

func parseEventFilter(criteria string) (eventFilter, error) {
	var f eventFilter
	for _, c := range strings.Split(criteria, ",") {
		c = strings.TrimSpace(c)
		k, v, ok := strings.Cut(strings.TrimSuffix(c, ")"), "(")
		if !ok || !strings.HasSuffix(c, ")") {
			return f, fmt.Errorf("eventfilter criterion %q: want name(value)", c)
		}
		switch k {
		case "action":
			switch v {
			case "include":
			case "exclude":
				f.exclude = true
			default:
				return f, fmt.Errorf("eventfilter action %q: want include or exclude", v)
			}
		case "name":
			f.name = v
		default:
			return f, fmt.Errorf("eventfilter criterion %q is not simulated (only action and name)", k)
		}
	}
	if f.name == "" {
		return f, fmt.Errorf("eventfilter %q: only name() filters are simulated", criteria)
	}
	return f, nil
}

// amiFilterAllows applies user's event filters to an event named name, in
// Asterisk's order: with include filters, only what one of them matches;
// then minus what an exclude filter matches. No filters: everything.
func (c *Config) amiFilterAllows(user, name string) bool {
	fs := c.AMIEventFilters[user]
	if len(fs) == 0 {
		return true
	}
	included, hasInclude := false, false
	for _, s := range fs {
		f, _ := parseEventFilter(s) // checked by validate
		switch {
		case f.exclude && strings.EqualFold(f.name, name):
			return false
		case !f.exclude:
			hasInclude = true
			included = included || strings.EqualFold(f.name, name)
		}
	}
	return !hasInclude || included
}

// amiWriteAllows reports whether user may run actions of class.
func (c *Config) amiWriteAllows(user, class string) bool { return permits(c.AMIWrite, user, class) }

func permits(m map[string]string, user, class string) bool {
	perms, ok := m[user]
	if !ok {
		return true
	}
	for _, p := range strings.Split(perms, ",") {
		p = strings.TrimSpace(strings.ToLower(p))
		if p == "all" || p == class {
			return true
		}
	}
	return false
}
