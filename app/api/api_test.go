package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeBans struct {
	mu   sync.Mutex
	bans map[netip.Prefix]BanView
}

func (f *fakeBans) List(context.Context) ([]BanView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []BanView
	for _, b := range f.bans {
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeBans) Ban(_ context.Context, p netip.Prefix, d time.Duration, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bans[p] = BanView{Prefix: p.String(), Permanent: d == 0, Reason: reason}
	return nil
}

func (f *fakeBans) Unban(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bans[p]; !ok {
		return errors.New("not banned")
	}
	delete(f.bans, p)
	return nil
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeBans) {
	t.Helper()
	fb := &fakeBans{bans: map[netip.Prefix]BanView{}}
	s, err := New(Config{Token: "s3cret"}, Deps{
		Bans:   fb,
		Health: map[string]func() error{"intrusion": func() error { return nil }, "blf": func() error { return errors.New("ari: not connected") }},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, fb
}

func do(t *testing.T, method, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, sb.String()
}

func TestNewRequiresToken(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("New without token succeeded")
	}
}

func TestTokenRequired(t *testing.T) {
	ts, _ := newTestServer(t)
	for _, tok := range []string{"", "wrong"} {
		resp, _ := do(t, "GET", ts.URL+"/api/bans", tok, "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
	}
}

func TestBanListUnban(t *testing.T) {
	ts, fb := newTestServer(t)
	resp, body := do(t, "POST", ts.URL+"/api/bans", "s3cret", `{"address":"2001:db8::7/64","reason":"test"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban: %d %s", resp.StatusCode, body)
	}
	if _, ok := fb.bans[netip.MustParsePrefix("2001:db8::/64")]; !ok {
		t.Fatalf("prefix not masked/stored: %v", fb.bans)
	}
	resp, body = do(t, "GET", ts.URL+"/api/bans", "s3cret", "")
	var got []BanView
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 || len(got) != 1 || !got[0].Permanent {
		t.Fatalf("list: %d %s %v", resp.StatusCode, body, err)
	}
	resp, body = do(t, "DELETE", ts.URL+"/api/bans/2001:db8::/64", "s3cret", "")
	if resp.StatusCode != 200 || len(fb.bans) != 0 {
		t.Fatalf("unban: %d %s", resp.StatusCode, body)
	}
}

func TestBadInput(t *testing.T) {
	ts, _ := newTestServer(t)
	for _, body := range []string{`{"address":"not-an-ip"}`, `{"address":"192.0.2.1","duration":"-5s"}`, `{`} {
		resp, out := do(t, "POST", ts.URL+"/api/bans", "s3cret", body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, "error") {
			t.Errorf("body %s: %d %s", body, resp.StatusCode, out)
		}
	}
}

func TestHealthReportsEachJob(t *testing.T) {
	ts, _ := newTestServer(t)
	resp, body := do(t, "GET", ts.URL+"/healthz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "ari: not connected") || !strings.Contains(body, `"intrusion":"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1/32", "::ffff:192.0.2.1": "192.0.2.1/32", "2001:db8::1": "2001:db8::1/128", "10.0.0.9/8": "10.0.0.0/8"} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}
