package blf

import (
	"strings"
	"testing"
)

// FuzzMapping: any device name (as ARI or AMI may send it) maps without
// panicking, never from a Stasis: device, and always to a Stasis: name.
func FuzzMapping(f *testing.F) {
	for _, s := range []string{"PJSIP/1001", "Stasis:1001", "Local/7000@default", "SIP/alice", "IAX2/x/y",
		"PJSIP/", "", "PJSIP/1001&Stasis:1001", "pjsip/1001", "Custom:lamp"} {
		f.Add(s)
	}
	c := DefaultConfig()
	m, err := NewMapping(c.Devices, c.Stasis, c.Extension)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, device string) {
		name, exten, ok := m.Map(device)
		if !ok {
			return
		}
		if strings.HasPrefix(device, "Stasis:") {
			t.Fatalf("mapped a Stasis device %q", device)
		}
		if !strings.HasPrefix(name, "Stasis:") || len(name) == len("Stasis:") || exten == "" {
			t.Fatalf("Map(%q) = %q, %q", device, name, exten)
		}
	})
}
