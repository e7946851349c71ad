package finder

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"defaults need server and sip_addr", "", "finder: server: required"},
		{"minimal", "server: pbx-a\nsip_addr: 10.0.0.1:5060", ""},
		{"ipv6 sip_addr", "server: pbx-a\nsip_addr: '[2001:db8::1]:5060'", ""},
		{"hostname sip_addr", "server: pbx-a\nsip_addr: pbx-a.example.net:5060", ""},
		{"sip_addr without port", "server: pbx-a\nsip_addr: 10.0.0.1", "finder: sip_addr"},
		{"sip_addr injection", "server: pbx-a\nsip_addr: '10.0.0.1:5060,M(x)'", "finder: sip_addr"},
		{"bad server name", "server: 'pbx a'\nsip_addr: 10.0.0.1:5060", "finder: server:"},
		{"bad listen", "server: a\nsip_addr: 10.0.0.1:5060\nlisten: 4573", "finder: listen"},
		{"template", "server: a\nsip_addr: 10.0.0.1:5060\nendpoint_template: '{account}-{exten}'", ""},
		{"template without exten", "server: a\nsip_addr: 10.0.0.1:5060\nendpoint_template: '{account}'", "must contain {exten}"},
		{"template unknown placeholder", "server: a\nsip_addr: 10.0.0.1:5060\nendpoint_template: '{tenant}-{exten}'", "unknown placeholder {tenant}"},
		{"template unsafe literal", "server: a\nsip_addr: 10.0.0.1:5060\nendpoint_template: '{exten}&x'", "endpoint_template"},
		{"template unclosed", "server: a\nsip_addr: 10.0.0.1:5060\nendpoint_template: '{exten'", "unclosed"},
		{"options with parens", "server: a\nsip_addr: 10.0.0.1:5060\nallowed_options: 'tU()'", "allowed_options"},
		{"grace below resync", "server: a\nsip_addr: 10.0.0.1:5060\nresync_interval: 2m\nexpiry_grace: 1m", "expiry_grace"},
		{"zero heartbeat", "server: a\nsip_addr: 10.0.0.1:5060\nheartbeat_ttl: 0s", "heartbeat_ttl"},
		{"index reload only on gaps", "server: a\nsip_addr: 10.0.0.1:5060\nindex_refresh: 0s", ""},
		{"negative index", "server: a\nsip_addr: 10.0.0.1:5060\nindex_refresh: -1s", "index_refresh"},
		{"bad account", "server: a\nsip_addr: 10.0.0.1:5060\naccounts: ['a,b']", "finder: accounts"},
		{"bad interserver", "server: a\nsip_addr: 10.0.0.1:5060\ninterserver_endpoint: 'x/y'", "interserver_endpoint"},
		{"zero sessions", "server: a\nsip_addr: 10.0.0.1:5060\nmax_sessions: 0", "max_sessions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
				t.Fatalf("yaml: %v", err)
			}
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestConfigIndex: the index is on by default and index: false turns it off.
func TestConfigIndex(t *testing.T) {
	c := DefaultConfig()
	if !c.Index {
		t.Fatal("index off by default")
	}
	if err := yaml.Unmarshal([]byte("index: false"), &c); err != nil || c.Index {
		t.Fatalf("index: false gave %v, %v", c.Index, err)
	}
}

func TestConfigDurationsFromYAML(t *testing.T) {
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte("resync_interval: 30s\nheartbeat_ttl: 1m"), &c); err != nil {
		t.Fatal(err)
	}
	if c.ResyncInterval != 30*time.Second || c.HeartbeatTTL != time.Minute {
		t.Fatalf("got %v %v", c.ResyncInterval, c.HeartbeatTTL)
	}
}

func TestTemplateName(t *testing.T) {
	for tmpl, want := range map[string]string{
		"{exten}":              "1001",
		"{account}-{exten}":    "acme-1001",
		"t_{account}.{exten}x": "t_acme.1001x",
	} {
		p, err := parseTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.name("acme", "1001"); got != want {
			t.Errorf("%s: %q, want %q", tmpl, got, want)
		}
	}
}
