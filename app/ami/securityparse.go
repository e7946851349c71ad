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
		if strings.EqualFold(f.Key, key) {
			return f.Value, true
		}
	}
	return "", false
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
			if ev.Type == "" && strings.EqualFold(k, "Event") {
				ev.Type = f.Value
			}
		case 7:
			if !hasService && strings.EqualFold(k, "Service") {
				ev.Service, hasService = f.Value, true
			} else if tv == "" && strings.EqualFold(k, "EventTV") {
				tv = f.Value
			}
		case 8:
			if ev.Severity == "" && strings.EqualFold(k, "Severity") {
				ev.Severity = f.Value
			}
		case 9:
			if ev.AccountID == "" && strings.EqualFold(k, "AccountID") {
				ev.AccountID = f.Value
			} else if ev.SessionID == "" && strings.EqualFold(k, "SessionID") {
				ev.SessionID = f.Value
			}
		case 12:
			if local == "" && strings.EqualFold(k, "LocalAddress") {
				local = f.Value
			}
		case 13:
			if !hasRemote && strings.EqualFold(k, "RemoteAddress") {
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
