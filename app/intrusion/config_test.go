package intrusion

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.Threshold != 1 || c.BanTime != 30*time.Second || c.IPv6PrefixLen != 64 || c.OnSuccess != OnSuccessKeep {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"ban_time", func(c *Config) { c.BanTime = -time.Second }},
		{"attempt_window", func(c *Config) { c.AttemptWindow = 0 }},
		{"strike_window", func(c *Config) { c.StrikeWindow = -1 }},
		{"threshold", func(c *Config) { c.Threshold = 0 }},
		{"ban_time_factor", func(c *Config) { c.BanTimeFactor = 0.5 }},
		{"max_ban_time", func(c *Config) { c.MaxBanTime = time.Second }},
		{"permanent_after", func(c *Config) { c.PermanentAfter = -1 }},
		{"escalation_window", func(c *Config) { c.EscalationWindow = 0 }},
		{"ipv4_prefix_len", func(c *Config) { c.IPv4PrefixLen = 33 }},
		{"ipv6_prefix_len", func(c *Config) { c.IPv6PrefixLen = 8 }},
		{"on_success", func(c *Config) { c.OnSuccess = "forgive" }},
		{"trigger_events", func(c *Config) { c.TriggerEvents = nil }},
		{"reconcile_interval", func(c *Config) { c.ReconcileInterval = -5 * time.Second }},
		{"store_timeout", func(c *Config) { c.StoreTimeout = 0 }},
		{"max_tracked", func(c *Config) { c.MaxTracked = 1 }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "intrusion: "+tc.field+":") {
				t.Fatalf("error does not name %s: %v", tc.field, err)
			}
			if _, err := New(c, Deps{}); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
trigger_events: [InvalidPassword, ChallengeResponseFailed, FailedACL]
services: [PJSIP]
threshold: 3
ban_time: 45s
permanent_after: 0
ipv6_prefix_len: 56
never_ban: [10.0.0.0/8, 192.0.2.7, "2001:db8::1", "::ffff:198.51.100.1"]
on_success: reset
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Threshold != 3 || c.BanTime != 45*time.Second || c.PermanentAfter != 0 || c.IPv6PrefixLen != 56 ||
		c.OnSuccess != OnSuccessReset || len(c.TriggerEvents) != 3 || c.AttemptWindow != 2*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::1/128", "198.51.100.1/32"}
	if len(c.NeverBan) != len(want) {
		t.Fatalf("never_ban %v", c.NeverBan)
	}
	for i, w := range want {
		if c.NeverBan[i].String() != w {
			t.Errorf("never_ban[%d] = %v, want %s", i, c.NeverBan[i], w)
		}
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "- 192.0.2.7/32") {
		t.Fatalf("encoded never_ban wrong:\n%s", buf.String())
	}
}

func TestConfigYAMLBadInput(t *testing.T) {
	for _, src := range []string{
		"never_ban: [300.1.2.3]",
		"never_ban: [10.0.0.0/40]",
		"never_ban: {a: b}",
		"ban_time: soon",
		"threshold: many",
		"no_such_key: 1",
	} {
		c := DefaultConfig()
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":           "192.0.2.7/32",
		"192.0.2.7/24":        "192.0.2.0/24",
		"2001:db8::7/64":      "2001:db8::/64",
		" 2001:db8::1 ":       "2001:db8::1/128",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
		"::ffff:10.1.2.0/120": "10.1.2.0/24",
	} {
		got, err := ParsePrefix(in)
		if err != nil || got.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "10.0.0.0/33", "fe80::1%eth0/64"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q): no error", in)
		}
	}
}
