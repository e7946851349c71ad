package finder

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func TestWhereis(t *testing.T) {
	st := newMemStore()
	now := time.Unix(1795609100, 0)
	st.now = func() time.Time { return now }
	ctx := context.Background()
	_ = st.Heartbeat(ctx, "aim-a", time.Minute)
	_ = st.Heartbeat(ctx, "aim-b", time.Minute)
	for _, r := range []state.Registration{
		{Server: "aim-b", ServerAddr: "10.0.0.2:5060", Endpoint: "1001", AOR: "1001", Contact: "sip:1001@10.9.0.1:5060",
			Source: "10.9.0.1:5060", Expires: now.Add(390 * time.Second), Updated: now.Add(-37 * time.Second)},
		{Server: "aim-a", ServerAddr: "127.0.0.1:5060", Endpoint: "1001", AOR: "1001", Contact: "sip:1001@127.0.0.1:5070",
			Source: "127.0.0.1:5070", UserAgent: "sipprobe/0.1", Expires: now.Add(300 * time.Second), Updated: now.Add(-5 * time.Second)},
		{Server: "aim-a", ServerAddr: "127.0.0.1:5060", Endpoint: "acme-1001", AOR: "acme-1001", Contact: "sip:acme-1001@127.0.0.1:5071",
			Expires: now.Add(60 * time.Second), Updated: now},
	} {
		_ = st.PutRegistration(ctx, r)
	}
	cfg := testConfig()
	locs, err := cfg.Whereis(ctx, st, "1001", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != 2 || locs[0].Server != "aim-a" || locs[1].Server != "aim-b" {
		t.Fatalf("locations %+v", locs)
	}
	var b bytes.Buffer
	if err := FormatLocations(&b, "1001", locs, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"SERVER", "aim-a", "127.0.0.1:5060", "sip:1001@127.0.0.1:5070", "5s", "(in 5m0s)", now.Add(300 * time.Second).Format("2006-01-02 15:04:05"), "sipprobe/0.1",
		"aim-b", "10.0.0.2:5060", "37s", "(in 6m30s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 3 {
		t.Errorf("%d lines, want header + 2:\n%s", lines, out)
	}

	cfg.EndpointTemplate = "{account}-{exten}"
	if locs, err := cfg.Whereis(ctx, st, "1001", "acme"); err != nil || len(locs) != 1 || locs[0].AOR != "acme-1001" {
		t.Errorf("account lookup: %+v %v", locs, err)
	}
	if _, err := cfg.Whereis(ctx, st, "1001", ""); err == nil || !strings.Contains(err.Error(), "needs an account") {
		t.Errorf("missing account: %v", err)
	}
	if _, err := cfg.Whereis(ctx, st, "1001&x", "acme"); err == nil {
		t.Error("unsafe extension accepted")
	}
	b.Reset()
	_ = FormatLocations(&b, "4242", nil, now)
	if b.String() != "4242 is registered nowhere (no live server has a contact for it)\n" {
		t.Errorf("empty output %q", b.String())
	}
	st.setFail(errDown)
	if _, err := testConfig().Whereis(ctx, st, "1001", ""); err == nil || !strings.HasPrefix(err.Error(), "finder: ") {
		t.Errorf("store error: %v", err)
	}
}
