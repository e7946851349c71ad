package blf

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestMappingDefault(t *testing.T) {
	c := DefaultConfig()
	m, err := NewMapping(c.Devices, c.Stasis, c.Extension)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		device, stasis, exten string
		ok                    bool
	}{
		{"PJSIP/1001", "Stasis:1001", "1001", true},
		{"SIP/alice", "Stasis:alice", "alice", true},
		{"IAX2/2001", "Stasis:2001", "2001", true},
		{"Stasis:1001", "", "", false}, // never: the echo would loop
		{"Local/7000@default", "", "", false},
		{"PJSIP/1001/sip:x", "", "", false},
		{"Custom:lamp", "", "", false},
		{"PJSIP/", "", "", false},
		{"", "", "", false},
	} {
		for range 2 { // second time from the cache
			s, e, ok := m.Map(tc.device)
			if s != tc.stasis || e != tc.exten || ok != tc.ok {
				t.Errorf("Map(%q) = %q, %q, %v; want %q, %q, %v", tc.device, s, e, ok, tc.stasis, tc.exten, tc.ok)
			}
		}
	}
}

func TestMappingMultiTenant(t *testing.T) {
	// Tenants name endpoints <tenant>_<ext>; lamps are per tenant.
	m, err := NewMapping(`^PJSIP/([a-z]+)_(\d+)$`, "Stasis:${1}-${2}", "$2")
	if err != nil {
		t.Fatal(err)
	}
	s, e, ok := m.Map("PJSIP/acme_1001")
	if !ok || s != "Stasis:acme-1001" || e != "1001" {
		t.Fatalf("Map = %q %q %v", s, e, ok)
	}
	if _, _, ok := m.Map("PJSIP/1001"); ok {
		t.Fatal("an endpoint without tenant mapped")
	}
	// A catch-all regexp still never maps Stasis: devices.
	m2, err := NewMapping(`^(.*)$`, "Stasis:$1", "$1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := m2.Map("Stasis:1001"); ok {
		t.Fatal("Stasis:1001 mapped")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"bad regexp", func(c *Config) { c.Devices = "(" }, "blf: devices:"},
		{"stasis template without prefix", func(c *Config) { c.Stasis = "$2" }, "blf: stasis:"},
		{"stasis template constant", func(c *Config) { c.Devices = "^PJSIP/.*$"; c.Stasis = "Stasis:x" }, "blf: stasis:"},
		{"no extension", func(c *Config) { c.Extension = "" }, "blf: extension:"},
		{"zero workers", func(c *Config) { c.Workers = 0 }, "blf: workers:"},
		{"ttl not above interval", func(c *Config) { c.HeartbeatTTL = c.HeartbeatInterval }, "blf: heartbeat_ttl:"},
		{"zero retry", func(c *Config) { c.RetryInterval = 0 }, "blf: retry_interval:"},
		{"negative reconcile", func(c *Config) { c.ReconcileInterval = -time.Second }, "blf: reconcile_interval:"},
	} {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	in := "devices: '^PJSIP/(t1)_(\\d+)$'\nstasis: 'Stasis:$1_$2'\nworkers: 4\nheartbeat_ttl: 20s\n"
	if err := yaml.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Workers != 4 || c.HeartbeatTTL != 20*time.Second || c.Extension != "$2" {
		t.Fatalf("decoded %+v", c)
	}
}
