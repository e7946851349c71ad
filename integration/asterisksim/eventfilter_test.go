package asterisksim

import "testing"

// manager.conf's structured event filters, in Asterisk's order: include
// filters first (only what one matches), then exclude filters.
func TestAMIEventFilters(t *testing.T) {
	cfg := Config{AMIEventFilters: map[string][]string{
		"excl": {"action(exclude),name(ChallengeSent)"},
		"incl": {"name(InvalidPassword)", "action(include),name(ChallengeResponseFailed)"},
		"both": {"name(InvalidPassword)", "name(ChallengeSent)", "action(exclude),name(ChallengeSent)"},
	}}
	cases := []struct {
		user, event string
		want        bool
	}{
		{"none", "ChallengeSent", true},
		{"excl", "ChallengeSent", false},
		{"excl", "challengesent", false},
		{"excl", "InvalidPassword", true},
		{"excl", "ContactStatus", true},
		{"incl", "InvalidPassword", true},
		{"incl", "ChallengeResponseFailed", true},
		{"incl", "ChallengeSent", false},
		{"both", "InvalidPassword", true},
		{"both", "ChallengeSent", false},
		{"both", "ContactStatus", false},
	}
	for _, c := range cases {
		if got := cfg.amiFilterAllows(c.user, c.event); got != c.want {
			t.Errorf("user %s, event %s: allowed %v, want %v", c.user, c.event, got, c.want)
		}
	}
	for _, bad := range []string{"action(drop),name(X)", "header(Channel)", "name(X", "action(exclude)", ""} {
		if _, err := parseEventFilter(bad); err == nil {
			t.Errorf("parseEventFilter(%q) = nil error, want one", bad)
		}
	}
}
