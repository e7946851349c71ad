package sipua

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestAuthorizationIsAValidDigest(t *testing.T) {
	p := &Phone{cfg: Config{User: "1001", Password: "pw1001", Server: "127.0.0.1:5060", Transport: "udp"}}
	a, err := p.Authorization(`Digest realm="asterisk",nonce="1795605996/e8a71882b1c5540b85f70932768e62d2",opaque="7e9aa69457b0ba3e",algorithm=MD5,qop="auth"`)
	if err != nil {
		t.Fatal(err)
	}
	f := parseChallenge(strings.ReplaceAll(a, ", ", ","))
	ha1 := md5hex("1001:asterisk:pw1001")
	ha2 := md5hex("REGISTER:sip:127.0.0.1:5060")
	want := md5hex(ha1 + ":" + f["nonce"] + ":" + f["nc"] + ":" + f["cnonce"] + ":auth:" + ha2)
	if f["response"] != want || f["opaque"] != "7e9aa69457b0ba3e" || f["uri"] != "sip:127.0.0.1:5060" {
		t.Errorf("authorization %q: fields %v, want response %s", a, f, want)
	}
	if !strings.HasPrefix(a, `Digest username="1001", realm="asterisk", nonce="1795605996/e8a71882b1c5540b85f70932768e62d2", uri="sip:127.0.0.1:5060", response="`) {
		t.Errorf("not the probe's field order: %s", a)
	}
	if _, err := p.Authorization(`Digest realm="asterisk"`); err == nil {
		t.Error("accepted a challenge without nonce")
	}
}

func TestRegisterTimesOutWhenDropped(t *testing.T) {
	// A UDP socket that never answers stands for a firewalled registrar.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := New(context.Background(), Config{Server: c.LocalAddr().String(), User: "1001", Password: "x", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Register(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
}

func TestParseResponse(t *testing.T) {
	r, err := ParseResponse([]byte("SIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"a\"\r\n\r\n"))
	if err != nil || r.Status != 401 || r.Reason != "Unauthorized" || r.Get("cseq") != "1 REGISTER" {
		t.Errorf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "REGISTER sip:x SIP/2.0\r\n\r\n", "SIP/2.0 abc\r\n\r\n"} {
		if _, err := ParseResponse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{{}, {Server: "127.0.0.1:5060"}, {Server: "127.0.0.1:5060", User: "1", Transport: "sctp"}, {Server: "nohostport", User: "1"}} {
		if p, err := New(context.Background(), c); err == nil {
			p.Close()
			t.Errorf("accepted %+v", c)
		}
	}
}
