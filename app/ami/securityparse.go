package ami

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// lookup returns the value of the first field named key and whether it was
// present at all (Get cannot tell a missing field from an empty one).
func lookup(m *Message, key string) (string, bool) {
	for _, f := range m.Fields {
		if keyIs(f.Key, key) {
			return f.Value, true
		}
	}
	return "", false
}

// keyIs compares field names case-insensitively, with a fast path for the
// case Asterisk uses.
func keyIs(k, want string) bool {
	return k == want || (len(k) == len(want) && strings.EqualFold(k, want))
}

// IsSecurityEvent reports whether m is an event of Asterisk's security class:
// it has Event, Service and RemoteAddress fields, and its Privilege, when
// present, names the security class.
func IsSecurityEvent(m *Message) bool {
	if m.Event() == "" {
		return false
	}
	if _, ok := lookup(m, "Service"); !ok {
		return false
	}
	if _, ok := lookup(m, "RemoteAddress"); !ok {
		return false
	}
	if priv, ok := lookup(m, "Privilege"); ok {
		for c := range strings.SplitSeq(priv, ",") {
			if strings.EqualFold(strings.TrimSpace(c), "security") {
				return true
			}
		}
		return false
	}
	return true
}

// ParseSecurityEvent extracts the fields doorman uses from a security event.
// Challenge, Response and ExpectedResponse are never copied: the last one
// holds the correct MD5 key of a failed AMI login. Errors name the field and
// the problem but never quote other fields.
func ParseSecurityEvent(m *Message) (SecurityEvent, error) {
	var (
		ev                    SecurityEvent
		remote, local, tv     string
		hasRemote, hasService bool
	)
	// One pass over the fields: this runs for every event under attack.
	for _, f := range m.Fields {
		k := f.Key
		switch len(k) {
		case 5:
			if ev.Type == "" && keyIs(k, "Event") {
				ev.Type = f.Value
			}
		case 7:
			if !hasService && keyIs(k, "Service") {
				ev.Service, hasService = f.Value, true
			} else if tv == "" && keyIs(k, "EventTV") {
				tv = f.Value
			}
		case 8:
			if ev.Severity == "" && keyIs(k, "Severity") {
				ev.Severity = f.Value
			}
		case 9:
			if ev.AccountID == "" && keyIs(k, "AccountID") {
				ev.AccountID = f.Value
			} else if ev.SessionID == "" && keyIs(k, "SessionID") {
				ev.SessionID = f.Value
			}
		case 12:
			if local == "" && keyIs(k, "LocalAddress") {
				local = f.Value
			}
		case 13:
			if !hasRemote && keyIs(k, "RemoteAddress") {
				remote, hasRemote = f.Value, true
			}
		}
	}
	if ev.Type == "" {
		return ev, fmt.Errorf("ami: security event: no Event field")
	}
	if ev.Service == "" {
		return ev, fmt.Errorf("ami: security event %s: no Service field", ev.Type)
	}
	if !hasRemote {
		return ev, fmt.Errorf("ami: security event %s: no RemoteAddress field", ev.Type)
	}
	var err error
	if ev.Transport, ev.Remote, err = ParseAddress(remote); err != nil {
		return ev, fmt.Errorf("ami: security event %s: RemoteAddress: %w", ev.Type, err)
	}
	if local != "" {
		if _, ev.Local, err = ParseAddress(local); err != nil {
			return ev, fmt.Errorf("ami: security event %s: LocalAddress: %w", ev.Type, err)
		}
	}
	if tv == "" {
		ev.Time = time.Now()
	} else if ev.Time, err = ParseEventTV(tv); err != nil {
		return ev, fmt.Errorf("ami: security event %s: %w", ev.Type, err)
	}
	return ev, nil
}

// ParseAddress parses an Asterisk security-event address such as
// "IPV4/UDP/127.0.0.1/5070" or "IPV6/TLS/2001:db8::1/5061" (IPv6 without
// brackets; brackets are accepted too) into its transport (upper case) and
// address. IPv4-mapped IPv6 addresses are unmapped.
func ParseAddress(s string) (transport string, ap netip.AddrPort, err error) {
	fam, rest, ok := strings.Cut(s, "/")
	if !ok {
		return "", ap, fmt.Errorf("address %q: want FAMILY/TRANSPORT/ADDRESS/PORT", s)
	}
	transport, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", ap, fmt.Errorf("address %q: no transport", s)
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", ap, fmt.Errorf("address %q: no port", s)
	}
	host, portStr := rest[:i], rest[i+1:]

	fam = strings.ToUpper(fam)
	if fam != "IPV4" && fam != "IPV6" {
		return "", ap, fmt.Errorf("address %q: unknown family %q", s, fam)
	}
	transport = strings.ToUpper(transport)
	if !validTransport(transport) {
		return "", ap, fmt.Errorf("address %q: bad transport %q", s, transport)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", ap, fmt.Errorf("address %q: bad port %q", s, portStr)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "", ap, fmt.Errorf("address %q: bad IP %q", s, host)
	}
	if fam == "IPV4" && !addr.Is4() {
		return "", ap, fmt.Errorf("address %q: family IPV4 with a non-IPv4 address", s)
	}
	if fam == "IPV6" && !addr.Is6() {
		return "", ap, fmt.Errorf("address %q: family IPV6 with a non-IPv6 address", s)
	}
	return transport, netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// validTransport accepts UDP, TCP, TLS, WS, WSS and any other short
// alphanumeric name Asterisk may add; it rejects empty or odd strings.
func validTransport(t string) bool {
	if t == "" || len(t) > 8 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// eventTVLayouts are the EventTV formats of Asterisk 12 and later.
var eventTVLayouts = []string{
	"2006-01-02T15:04:05.000-0700",
	"2006-01-02T15:04:05.000000-0700",
	"2006-01-02T15:04:05-0700",
	time.RFC3339Nano,
}

// ParseEventTV parses an EventTV value: "2026-11-25T11:26:31.015+0000", or
// the "<seconds>-<microseconds>" form of Asterisk 11 and older.
func ParseEventTV(s string) (time.Time, error) {
	if t, ok := parseEventTVFast(s); ok {
		return t, nil
	}
	for _, l := range eventTVLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if sec, usec, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.ParseInt(sec, 10, 64)
		b, err2 := strconv.ParseInt(usec, 10, 64)
		if err1 == nil && err2 == nil && a >= 0 && b >= 0 && b < 1e6 {
			return time.Unix(a, b*1000).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("EventTV %q: not a time", s)
}

// parseEventTVFast handles the exact form Asterisk 22 writes,
// "2026-11-25T11:26:31.015+0000", without time.Parse's generality: this runs
// for every security event.
func parseEventTVFast(s string) (time.Time, bool) {
	if len(s) != 28 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' ||
		(s[23] != '+' && s[23] != '-') {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var v [8]int
	for i, r := range [8][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 23}, {24, 28}} {
		n, ok := num(r[0], r[1])
		if !ok {
			return time.Time{}, false
		}
		v[i] = n
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59 || v[7]/100 > 23 || v[7]%100 > 59 {
		return time.Time{}, false
	}
	off := (v[7]/100*3600 + v[7]%100*60)
	if s[23] == '-' {
		off = -off
	}
	t := time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], v[6]*1e6, time.UTC)
	if t.Day() != v[2] { // February 30th and the like: let time.Parse refuse it
		return time.Time{}, false
	}
	t = t.Add(-time.Duration(off) * time.Second)
	return t, true
}
