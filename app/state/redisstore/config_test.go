package redisstore

import (
	"net/netip"
	"unicode/utf8"

	"bytes"
	"fmt"
	"github.com/asterisksupport/doorman/app/state"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Config
	}{
		{"redis://127.0.0.1:6379", Config{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://redis", Config{Addrs: []string{"redis:6379"}}},
		{"redis://[::1]:7000/2", Config{Addrs: []string{"[::1]:7000"}, DB: 2}},
		{"redis://u:p%40ss@h:1/0?key_prefix=x:&dial_timeout=3s&read_timeout=500ms",
			Config{Addrs: []string{"h:1"}, Username: "u", Password: "p@ss", KeyPrefix: "x:",
				DialTimeout: 3 * time.Second, ReadTimeout: 500 * time.Millisecond}},
		{"redis://:pw@s1:26379,s2:26379?master_name=mymaster",
			Config{Addrs: []string{"s1:26379", "s2:26379"}, Password: "pw", MasterName: "mymaster"}},
		{"rediss://h:6380?ca_file=/ca.pem&server_name=redis.example&insecure_skip_verify=true",
			Config{Addrs: []string{"h:6380"}, TLS: TLSConfig{Enable: true, CAFile: "/ca.pem",
				ServerName: "redis.example", InsecureSkipVerify: true}}},
	} {
		got, err := ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%q) = %+v; want %+v", tc.url, got, tc.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, wantErr string }{
		{"http://h:1", "scheme"},
		{"redis://", "no host"},
		{"redis://h:1/x", "database"},
		{"redis://h:1?bogus=1", "unknown parameter \"bogus\""},
		{"redis://h:1?dial_timeout=soon", "dial_timeout"},
		{"redis://h:1?insecure_skip_verify=maybe", "insecure_skip_verify"},
		{"rediss://h:1?cert_file=/c.pem", "cert_file and key_file"},
		{"redis://user:topsecret@h:1:2:3", ""},
		{"redis://user:topsecret@h%zz", ""},
	} {
		_, err := ParseURL(tc.url)
		if err == nil {
			t.Errorf("ParseURL(%q): no error", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseURL(%q) = %v; want it to mention %q", tc.url, err, tc.wantErr)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("ParseURL(%q) error shows the password: %v", tc.url, err)
		}
	}
}

func TestConfigRedacts(t *testing.T) {
	c := Config{Addrs: []string{"h:1"}, Username: "u", Password: "topsecret", SentinelPassword: "alsosecret"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "redis", c)
	for _, out := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v", c), buf.String()} {
		if strings.Contains(out, "secret") {
			t.Errorf("password shown: %s", out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("no redaction mark: %s", out)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"redis://127.0.0.1:6379", "rediss://u:p@h:1/3?ca_file=x&server_name=y",
		"redis://:pw@a:1,b:2?master_name=m", "redis://h?dial_timeout=1s", "redis://[::1]", "redis://%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseURL(s)
		if err != nil {
			if c.Password != "" && len(c.Password) > 3 && strings.Contains(err.Error(), c.Password) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		if len(c.Addrs) == 0 {
			t.Fatalf("ParseURL(%q) accepted no address", s)
		}
		if c.Password != "" && len(c.Password) > 3 && strings.Contains(c.String(), c.Password) && c.Password != redactedPlaceholder {
			t.Fatalf("String shows the password: %s", c.String())
		}
	})
}

func FuzzBanCodec(f *testing.F) {
	f.Add("192.0.2.1/32", true, int64(0), int64(1732540000000000000), int64(3), "pbx1", "sip attack")
	f.Add("2001:db8::/64", false, int64(1732540000123456789), int64(0), int64(-1), "a\x00b", "r\x00|{")
	f.Fuzz(func(t *testing.T, prefix string, perm bool, exp, created, strikes int64, server, reason string) {
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			return
		}
		b := state.Ban{Prefix: p, Permanent: perm, Strikes: strikes, Server: server, Reason: reason}
		if !perm {
			b.Expires = time.Unix(0, exp)
		}
		if created != 0 {
			b.Created = time.Unix(0, created)
		}
		if !utf8.ValidString(server) || !utf8.ValidString(reason) {
			return // JSON (the NUL fallback) would replace invalid UTF-8
		}
		v, err := encodeBan(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBan(string(v))
		if err != nil {
			t.Fatalf("decode %q: %v", v, err)
		}
		if got.Prefix != b.Prefix || got.Permanent != b.Permanent || !got.Expires.Equal(b.Expires) ||
			!got.Created.Equal(b.Created) || got.Strikes != b.Strikes || got.Server != b.Server || got.Reason != b.Reason {
			t.Fatalf("round trip %+v -> %+v", b, got)
		}
	})
}

func FuzzDecodeBan(f *testing.F) {
	f.Add("192.0.2.1/32\x00P\x000\x000\x003\x00pbx\x00why")
	f.Add(`{"prefix":"192.0.2.1/32","permanent":true}`)
	f.Add("x\x00y")
	f.Fuzz(func(t *testing.T, v string) {
		_, _ = decodeBan(v) // must not panic
	})
}
