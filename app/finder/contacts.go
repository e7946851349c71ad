package finder

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
)

// contactKey identifies one contact of one AOR on this server.
type contactKey struct{ aor, uri string }

// contactStatus is a parsed AMI ContactStatus event. It carries no expiry,
// user agent or registering server (measured on Asterisk 22).
type contactStatus struct {
	key      contactKey
	endpoint string
	status   string // NonQualified, Reachable, Unreachable, Created, Updated, Removed, Unknown
}

func parseContactStatus(m *ami.Message) (contactStatus, bool) {
	c := contactStatus{
		key:      contactKey{aor: m.Get("AOR"), uri: m.Get("URI")},
		endpoint: m.Get("EndpointName"),
		status:   m.Get("ContactStatus"),
	}
	return c, c.key.aor != "" && c.key.uri != "" && c.status != ""
}

// contactListResult tells why a ContactList item was or was not kept.
type contactListResult int

const (
	contactKept contactListResult = iota
	contactForeign
	contactStatic
	contactExpired
	contactMalformed
)

// parseContactList turns one PJSIPShowContacts ContactList event into a
// registration of server. Contacts whose RegServer names another server (a
// shared sorcery database) are that server's agent's business; contacts with
// ExpirationTime 0 are static (aor contact=), not registrations.
func (t *Tracker) parseContactList(m *ami.Message, now time.Time) (state.Registration, contactListResult) {
	aor, _, _ := strings.Cut(m.Get("ObjectName"), ";@")
	uri := m.Get("Uri")
	if aor == "" || uri == "" {
		return state.Registration{}, contactMalformed
	}
	if rs := m.Get("RegServer"); rs != "" && rs != t.cfg.Server {
		return state.Registration{}, contactForeign
	}
	r := state.Registration{
		Server:     t.cfg.Server,
		ServerAddr: t.cfg.SIPAddr,
		Endpoint:   m.Get("Endpoint"),
		AOR:        aor,
		Contact:    uri,
		UserAgent:  m.Get("UserAgent"),
		Updated:    now,
	}
	if a, p := m.Get("ViaAddr"), m.Get("ViaPort"); a != "" && p != "" && p != "0" {
		r.Source = net.JoinHostPort(a, p)
	}
	switch exp, err := strconv.ParseInt(strings.TrimSpace(m.Get("ExpirationTime")), 10, 64); {
	case err != nil:
		r.Expires = t.provisionalExpiry(now)
	case exp == 0:
		return state.Registration{}, contactStatic
	case time.Unix(exp, 0).Before(now):
		return state.Registration{}, contactExpired
	default:
		r.Expires = time.Unix(exp, 0).Add(t.cfg.ExpiryGrace)
	}
	if r.Validate() != nil { // e.g. a NUL byte: no store could key on it
		return state.Registration{}, contactMalformed
	}
	return r, contactKept
}

// provisionalExpiry is used until a resync tells the real expiry: long
// enough to reach the next periodic resync.
func (t *Tracker) provisionalExpiry(now time.Time) time.Time {
	return now.Add(t.cfg.ResyncInterval + t.cfg.ExpiryGrace)
}
