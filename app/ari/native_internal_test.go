package ari

import "testing"

func TestNativeConfigDefaults(t *testing.T) {
	c := NativeConfig{URL: "https://pbx:8089/ari/"}.withDefaults()
	if c.WebsocketURL != "wss://pbx:8089/ari/events" || c.Application != "doorman" || c.URL != "https://pbx:8089/ari" {
		t.Fatalf("defaults %+v", c)
	}
	if got := devicePath("PJSIP/1001"); got != "/deviceStates/PJSIP%2F1001" {
		t.Fatalf("devicePath = %q", got)
	}
}
