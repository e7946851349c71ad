package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTargetsExampleParses(t *testing.T) {
	tg, err := LoadTargets("../e2e/targets.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Servers) != 2 || tg.Servers[0].Name != "asta" || tg.Servers[1].SIP.UDP != "192.0.2.11:5060" {
		t.Fatalf("servers: %+v", tg.Servers)
	}
	a := tg.Servers[0]
	if a.AMI.Secret != "change-me" || a.Agent.FastAGI != "127.0.0.1:4573" || a.SIP.UDP6 != "[2001:db8::10]:5060" || a.AllowRestart {
		t.Fatalf("server asta: %+v", a)
	}
	if tg.Client("attacker6_sibling") != "2001:db8:66::beef" || tg.Accounts["1003"].Password != "pw1003" {
		t.Fatalf("clients %v accounts %v", tg.Clients, tg.Accounts)
	}
}

const validTargets = `
servers:
  - name: a
    sip: {udp: "10.0.0.1:5060"}
    ami: {addr: "10.0.0.1:5038", username: e2e, secret: s}
    ari: {url: "http://10.0.0.1:8088/ari", username: u, password: p}
    agent: {api: "http://10.0.0.1:9485", token: t, fastagi: "127.0.0.1:4573"}
clients: {attacker: 10.0.1.1, office: 10.0.1.2, phones: 10.0.1.3}
accounts: {"1001": {password: a}, "1002": {password: b}, "1003": {password: c}}
`

func TestParseTargets(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(validTargets, old) {
			t.Fatalf("test bug: %q not in the valid file", old)
		}
		return strings.Replace(validTargets, old, new, 1)
	}
	cases := []struct {
		name, yaml, wantErr string
	}{
		{"valid", validTargets, ""},
		{"secret from a file", edit("secret: s", "secret_file: "+secret), ""},
		{"empty file", "", "empty file"},
		{"unknown top-level key", validTargets + "extra: 1\n", "field extra not found"},
		{"unknown server key", edit("name: a", "name: a\n    amy: {}"), "field amy not found"},
		{"no servers", "clients: {attacker: 10.0.1.1}\n", "servers: at least one"},
		{"missing name", edit("name: a", "name: ''"), "servers[0].name: missing"},
		{"duplicate name", strings.Replace(validTargets, "clients:", `  - name: a
    sip: {udp: "10.0.0.2:5060"}
    ami: {addr: "10.0.0.2:5038", username: e2e, secret: s}
    ari: {url: "http://10.0.0.2:8088/ari", username: u, password: p}
    agent: {api: "http://10.0.0.2:9485", token: t, fastagi: "127.0.0.1:4573"}
clients:`, 1), `servers[1].name: "a" used twice`},
		{"missing sip.udp", edit(`sip: {udp: "10.0.0.1:5060"}`, "sip: {}"), "servers[0] (a).sip.udp: missing"},
		{"bad ami.addr", edit(`addr: "10.0.0.1:5038"`, `addr: "10.0.0.1"`), "servers[0] (a).ami.addr: \"10.0.0.1\" is not host:port"},
		{"udp6 not IPv6", edit(`udp: "10.0.0.1:5060"`, `udp: "10.0.0.1:5060", udp6: "10.0.0.1:5060"`), "sip.udp6"},
		{"bad ari.url", edit(`url: "http://10.0.0.1:8088/ari"`, `url: "10.0.0.1:8088"`), "servers[0] (a).ari.url"},
		{"missing agent.api", edit(`api: "http://10.0.0.1:9485", `, ""), "servers[0] (a).agent.api: missing"},
		{"missing fastagi", edit(`, fastagi: "127.0.0.1:4573"`, ""), "agent.fastagi: missing"},
		{"missing ami.username", edit("username: e2e, ", ""), "servers[0] (a).ami.username: missing"},
		{"missing secret", edit("secret: s", "secret: ''"), "servers[0] (a).ami.secret: missing"},
		{"secret and file", edit("secret: s", "secret: s, secret_file: "+secret), "not both"},
		{"unreadable token file", edit("token: t", "token_file: /nonexistent/token"), "agent.token_file"},
		{"empty password file", edit("password: p", "password_file: "+empty), "ari.password_file"},
		{"unknown client", edit("phones: 10.0.1.3", "phones: 10.0.1.3, attackr: 10.0.1.4"), "clients.attackr: unknown client"},
		{"client not an address", edit("office: 10.0.1.2", "office: pc.example"), "clients.office"},
		{"missing client", edit("office: 10.0.1.2, ", ""), "clients.office: missing"},
		{"half an IPv6 pair", edit("phones: 10.0.1.3", "phones: 10.0.1.3, attacker6: 'fd19::4'"), "give both or neither"},
		{"IPv6 pair in two /64s", edit("phones: 10.0.1.3", "phones: 10.0.1.3, attacker6: 'fd19::4', attacker6_sibling: 'fd20::4'"), "attacker6_sibling"},
		{"unknown account", edit(`"1003": {password: c}`, `"1003": {password: c}, "1004": {password: d}`), "accounts.1004: unknown extension"},
		{"missing account", edit(`, "1003": {password: c}`, ""), "accounts.1003: missing"},
		{"account without password", edit(`"1002": {password: b}`, `"1002": {}`), "accounts.1002.password: missing"},
		{"unknown account key", edit(`"1002": {password: b}`, `"1002": {pass: b}`), "field pass not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := ParseTargets([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "secret from a file" && tg.Servers[0].AMI.Secret != "from-file" {
					t.Fatalf("secret_file read as %q", tg.Servers[0].AMI.Secret)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v; want one containing %q", err, tc.wantErr)
			}
		})
	}
}
