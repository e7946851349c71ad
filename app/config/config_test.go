package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "ami.secret")
	if err := os.WriteFile(secret, []byte("topsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "api: {token: x}\nari: {password: p}\n"
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"defaults need a token", "server: {sip_addr: '198.51.100.1:5060'}", "api.token"},
		{"minimal", base + "server: {name: a, sip_addr: '198.51.100.1:5060'}", ""},
		{"secret file", base + "server: {sip_addr: '198.51.100.1:5060'}\nami: {secret_file: " + secret + "}", ""},
		{"missing secret file", base + "server: {sip_addr: '198.51.100.1:5060'}\nami: {secret_file: /nonexistent}", "ami.secret_file"},
		{"unknown key", base + "firewal: {}", "field firewal not found"},
		{"bad backend", base + "firewall: {backend: iptables}", "firewall.backend"},
		{"bad cluster address", base + "server: {cluster: [not-an-ip]}", "server.cluster"},
		{"negative heartbeat", base + "server: {heartbeat_ttl: -1s}", "server.heartbeat_ttl"},
		{"negative ban time", base + "intrusion: {ban_time: -30s}", "ban_time"},
		{"ari-proxy", "api: {token: x}\nserver: {name: a, sip_addr: '198.51.100.1:5060'}\nari: {transport: ari-proxy, nats_url: 'nats://127.0.0.1:4222'}", ""},
		{"ari-proxy bad nats url", "api: {token: x}\nari: {transport: ari-proxy, nats_url: 'amqp://rabbit'}", "nats_url"},
		{"ari-proxy bad node", "api: {token: x}\nari: {transport: ari-proxy, node: 'a.b'}", "node"},
		{"bad transport", "api: {token: x}\nari: {password: p, transport: carrier-pigeon}", "ari.transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if strings.Contains(tc.yaml, "secret_file") && c.AMI.Secret != "topsecret" {
					t.Fatalf("secret file not read: %q", c.AMI.Secret)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.AMI.Secret, c.ARI.Password, c.Store.Redis.Password, c.API.Token = "s1", "s2", "s3", "s4"
	c.ARI.NATSURL = "nats://doorman:s5@10.0.0.5:4222,nats://10.0.0.6:4222"
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		if strings.Contains(string(out), ": "+s+"\n") {
			t.Fatalf("secret %s printed:\n%s", s, out)
		}
	}
	if strings.Contains(string(out), "s5") || !strings.Contains(string(out), "nats://REDACTED@10.0.0.5:4222,nats://10.0.0.6:4222") {
		t.Fatalf("NATS credentials printed or URL lost:\n%s", out)
	}
	if c.AMI.Secret != "s1" {
		t.Fatal("Redacted changed the original")
	}
}

func TestARIProxyDefaultsToServerName(t *testing.T) {
	c, err := Parse([]byte("api: {token: x}\nserver: {name: aim-b, sip_addr: '198.51.100.1:5060'}\nari: {transport: ari-proxy}"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.ARIProxy()
	if p.NATSURL != "nats://127.0.0.1:4222" || p.Application != "doorman" || p.Node != "" || p.SystemName != "aim-b" {
		t.Fatalf("ARIProxy() = %+v", p)
	}
}
