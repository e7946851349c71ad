package redisstore

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

func feedSample() []state.Ban {
	now := time.Unix(1_700_000_000, 123_456_789)
	return []state.Ban{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true, Server: "pbx-a", Reason: "first", Created: now},
		{Prefix: netip.MustParsePrefix("2001:db8::/64"), Expires: now.Add(time.Hour), Strikes: 5, Server: "pbx b",
			Reason: "3 failed \"logins\" \x00 <é> in 1m0s 5 6 7 "},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Permanent: true},
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Expires: time.Unix(0, 1), Strikes: -1, Reason: " "},
	}
}

func sameFeedBan(a, b state.Ban) bool {
	return a.Prefix == b.Prefix && a.Permanent == b.Permanent && a.Expires.Equal(b.Expires) && a.Created.Equal(b.Created) &&
		a.Strikes == b.Strikes && a.Server == b.Server && a.Reason == b.Reason
}

// A batch message carries its first ban where a single-ban decoder looks,
// and all of them in More; single-ban messages decode as before.
func TestBanFeedFormat(t *testing.T) {
	bans := feedSample()
	batch, err := encodeBanEvents(state.Added, bans)
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		Kind state.EventKind `json:"k"`
		Ban  state.Ban       `json:"b"`
	}
	if err := json.Unmarshal(batch, &old); err != nil || old.Kind != state.Added || !sameFeedBan(old.Ban, bans[0]) {
		t.Fatalf("single-ban decode of a batch = %+v, %v", old, err)
	}
	evs, err := decodeBanEvents(string(batch))
	if err != nil || len(evs) != len(bans) {
		t.Fatalf("decode batch = %+v, %v", evs, err)
	}
	for i, e := range evs {
		if e.Kind != state.Added || !sameFeedBan(e.Ban, bans[i]) {
			t.Errorf("event %d = %+v, want %+v", i, e, bans[i])
		}
	}
	single := `{"k":1,"b":{"prefix":"192.0.2.1/32","permanent":false,"reason":"","server":"","strikes":0,"created":"0001-01-01T00:00:00Z"}}`
	evs, err = decodeBanEvents(single)
	if err != nil || len(evs) != 1 || evs[0].Kind != state.Removed || evs[0].Ban.Prefix != bans[0].Prefix {
		t.Fatalf("decode single = %+v, %v", evs, err)
	}
	for _, bad := range []string{"{", `{"k":0,"b":{"prefix":"x"}}`, `{"b":{},"more":"192.0.2.2/32 T 1 0 0 0 0 x"}`, `{"b":{"prefix":"192.0.2.1/32"},"more":"192.0.2.2/32 T 1 0 0 5 0 ab"}`,
		`{"b":{"prefix":"192.0.2.1/32"},"more":"192.0.2.2/32 X 1 0 0 0 0 "}`, `{"b":{"prefix":"192.0.2.1/32"},"more":"x T 1 0 0 0 0 "}`,
		`{"b":{"prefix":"192.0.2.1/32"},"more":"192.0.2.2/32 T 1 0 0 -1 0 "}`, `{"b":{"prefix":"192.0.2.1/32"},"more":"192.0.2.2/32 T 1 0"}`} {
		if evs, err := decodeBanEvents(bad); err == nil {
			t.Errorf("decode %q = %+v, want an error", bad, evs)
		}
	}
}

func FuzzDecodeBanEvents(f *testing.F) {
	batch, err := encodeBanEvents(state.Added, feedSample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(batch))
	f.Add(`{"k":1,"b":{"prefix":"192.0.2.1/32"}}`)
	f.Add(`{"b":{"prefix":"192.0.2.1/32"},"more":"192.0.2.2/32 T 1 0 0 1 1 ab"}`)
	f.Fuzz(func(t *testing.T, payload string) {
		evs, err := decodeBanEvents(payload)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bans.
		bans := make([]state.Ban, len(evs))
		for i, e := range evs {
			bans[i] = e.Ban
		}
		again, err := encodeBanEvents(evs[0].Kind, bans)
		if err != nil {
			return // e.g. a time JSON cannot write
		}
		evs2, err := decodeBanEvents(string(again))
		if err != nil || len(evs2) != len(evs) {
			t.Fatalf("re-decode of %q: %d events, %v", again, len(evs2), err)
		}
		for i := range evs {
			if !sameFeedBan(evs[i].Ban, evs2[i].Ban) {
				t.Fatalf("ban %d: %+v then %+v", i, evs[i].Ban, evs2[i].Ban)
			}
		}
	})
}
