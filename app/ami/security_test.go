package ami

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSecurityEventCapture(t *testing.T) {
	msgs, _ := parseAll(t, testdata(t, "ami-security-events.txt"), true, ParserLimits{})
	var evs []SecurityEvent
	for i := range msgs {
		if !IsSecurityEvent(&msgs[i]) {
			if s := msgs[i].Get("Service"); s != "" {
				t.Errorf("%s with Service %s not taken as a security event", msgs[i].Event(), s)
			}
			continue
		}
		ev, err := ParseSecurityEvent(&msgs[i])
		if err != nil {
			t.Fatalf("%v: %v", msgs[i].Fields, err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 29 { // 7 SuccessfulAuth + 10 ChallengeSent + 4 ChallengeResponseFailed + 6 InvalidAccountID + 2 InvalidPassword
		t.Fatalf("%d security events, want 29", len(evs))
	}
	want := SecurityEvent{
		Type: "ChallengeResponseFailed", Service: "PJSIP", AccountID: "1001",
		SessionID: "17287af8672f20fd@127.0.0.1", Transport: "UDP",
		Remote:   netip.MustParseAddrPort("127.0.0.1:5070"),
		Local:    netip.MustParseAddrPort("127.0.0.1:5060"),
		Severity: "Error",
		Time:     time.Date(2026, 11, 25, 11, 26, 33, 17e6, time.UTC),
	}
	got := evs[2]
	if !got.Time.Equal(want.Time) {
		t.Errorf("time = %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// The AMI wrong secret: InvalidPassword over TCP.
	for _, ev := range evs {
		if ev.Type == "InvalidPassword" && (ev.Service != "AMI" || ev.Transport != "TCP" || ev.AccountID != "aim" || !ev.Remote.Addr().IsLoopback()) {
			t.Errorf("InvalidPassword = %+v", ev)
		}
	}
}

// An AMI MD5 failure carries the right key in ExpectedResponse: the typed
// event has no field that could hold it.
func TestParseSecurityEventDropsKeys(t *testing.T) {
	msgs, _ := parseAll(t, testdata(t, "md5-login-ami-events.txt"), true, ParserLimits{})
	found := false
	for i := range msgs {
		if msgs[i].Event() != "ChallengeResponseFailed" {
			continue
		}
		found = true
		key := msgs[i].Get("ExpectedResponse")
		if key == "" {
			t.Fatal("capture has no ExpectedResponse")
		}
		ev, err := ParseSecurityEvent(&msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.ToLower(strings.Join(fieldStrings(ev), " ")); strings.Contains(s, key) || strings.Contains(s, msgs[i].Get("Response")) {
			t.Fatalf("typed event keeps a key: %+v", ev)
		}
		if ev.AccountID != "" || ev.Service != "AMI" || ev.Remote.Port() != 58546 {
			t.Errorf("event = %+v", ev)
		}
	}
	if !found {
		t.Fatal("no ChallengeResponseFailed in the capture")
	}
}

func fieldStrings(v any) []string {
	var out []string
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if s, ok := rv.Field(i).Interface().(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestParseAddress(t *testing.T) {
	good := []struct{ in, tr, ap string }{
		{"IPV4/UDP/127.0.0.1/5070", "UDP", "127.0.0.1:5070"},
		{"IPV6/UDP/2001:db8::1/5060", "UDP", "[2001:db8::1]:5060"},
		{"IPV6/TCP/[2001:db8::2]/5060", "TCP", "[2001:db8::2]:5060"},
		{"IPV4/TLS/192.0.2.7/5061", "TLS", "192.0.2.7:5061"},
		{"IPV4/WS/192.0.2.8/8088", "WS", "192.0.2.8:8088"},
		{"IPV6/WSS/fe80::1/8089", "WSS", "[fe80::1]:8089"},
		{"ipv4/udp/10.0.0.1/0", "UDP", "10.0.0.1:0"},
		{"IPV6/UDP/::ffff:192.0.2.9/5060", "UDP", "192.0.2.9:5060"},
	}
	for _, g := range good {
		tr, ap, err := ParseAddress(g.in)
		if err != nil || tr != g.tr || ap != netip.MustParseAddrPort(g.ap) {
			t.Errorf("%s: %s %v %v, want %s %s", g.in, tr, ap, err, g.tr, g.ap)
		}
	}
	bad := map[string]string{
		"":                          "want FAMILY",
		"IPV4":                      "want FAMILY",
		"IPV4/UDP":                  "no transport",
		"IPV4/UDP/127.0.0.1":        "no port",
		"IPV5/UDP/127.0.0.1/5060":   "unknown family",
		"IPV4//127.0.0.1/5060":      "bad transport",
		"IPV4/U-P/127.0.0.1/5060":   "bad transport",
		"IPV4/UDP/127.0.0.1/65536":  "bad port",
		"IPV4/UDP/127.0.0.1/":       "bad port",
		"IPV4/UDP/localhost/5060":   "bad IP",
		"IPV4/UDP/2001:db8::1/5060": "non-IPv4",
		"IPV6/UDP/127.0.0.1/5060":   "non-IPv6",
		"IPV4/UDP//5060":            "bad IP",
	}
	for in, want := range bad {
		if _, _, err := ParseAddress(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

func TestParseSecurityEventErrors(t *testing.T) {
	base := func(extra ...Field) *Message {
		return &Message{Fields: append([]Field{{"Event", "InvalidAccountID"}, {"Privilege", "security,all"}, {"Service", "PJSIP"}}, extra...)}
	}
	cases := map[string]*Message{
		"no RemoteAddress": base(),
		"RemoteAddress":    base(Field{"RemoteAddress", "IPV4/UDP/999.0.0.1/5060"}),
		"LocalAddress":     base(Field{"RemoteAddress", "IPV4/UDP/10.0.0.1/5060"}, Field{"LocalAddress", "bogus"}),
		"EventTV":          base(Field{"RemoteAddress", "IPV4/UDP/10.0.0.1/5060"}, Field{"EventTV", "yesterday"}),
		"no Service":       {Fields: []Field{{"Event", "X"}, {"RemoteAddress", "IPV4/UDP/10.0.0.1/5060"}}},
		"no Event":         {Fields: []Field{{"Service", "AMI"}}},
	}
	for want, m := range cases {
		if _, err := ParseSecurityEvent(m); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
	// No EventTV: the receive time.
	ev, err := ParseSecurityEvent(base(Field{"RemoteAddress", "IPV4/UDP/10.0.0.1/5060"}))
	if err != nil || time.Since(ev.Time) > time.Minute {
		t.Errorf("no EventTV: %v %v", ev.Time, err)
	}
	// IsSecurityEvent: class and fields.
	if IsSecurityEvent(&Message{Fields: []Field{{"Event", "PeerStatus"}, {"Privilege", "system,all"}, {"Service", "x"}, {"RemoteAddress", "y"}}}) {
		t.Error("system-class event taken as security")
	}
	if !IsSecurityEvent(&Message{Fields: []Field{{"Event", "X"}, {"Service", "AMI"}, {"RemoteAddress", "y"}}}) {
		t.Error("event without Privilege but with Service and RemoteAddress not taken")
	}
	if IsSecurityEvent(&Message{Fields: []Field{{"Response", "Success"}, {"Service", "AMI"}, {"RemoteAddress", "y"}}}) {
		t.Error("a response taken as an event")
	}
}

func TestParseEventTV(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-25T11:26:31.015+0000":    time.Date(2026, 11, 25, 11, 26, 31, 15e6, time.UTC),
		"2026-11-25T12:26:31.015+0100":    time.Date(2026, 11, 25, 11, 26, 31, 15e6, time.UTC),
		"2026-11-25T06:56:31.015-0430":    time.Date(2026, 11, 25, 11, 26, 31, 15e6, time.UTC),
		"2026-12-31T23:59:59.999+0000":    time.Date(2026, 12, 31, 23, 59, 59, 999e6, time.UTC),
		"2026-11-25T11:26:31.015123+0000": time.Date(2026, 11, 25, 11, 26, 31, 15123e3, time.UTC),
		"2026-11-25T11:26:31Z":            time.Date(2026, 11, 25, 11, 26, 31, 0, time.UTC),
		"1795605991-015000":               time.Date(2026, 11, 25, 11, 26, 31, 15e6, time.UTC),
	} {
		got, err := ParseEventTV(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "1-2-3", "123-9999999", "-5-1", "2026-02-30T11:26:31.015+0000",
		"2026-13-01T11:26:31.015+0000", "2026-11-25T24:26:31.015+0000", "2026-11-25T11:26:31.015+0099", "2026-11-25T11:26:31.0x5+0000"} {
		if _, err := ParseEventTV(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
