package redisstore

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// A batch message still carries its first ban where a single-ban decoder
// looks, and single-ban messages decode as before.
func TestBanFeedFormat(t *testing.T) {
	b1 := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true}
	b2 := state.Ban{Prefix: netip.MustParsePrefix("2001:db8::/64"), Expires: time.Unix(1e9, 0).UTC()}
	batch, err := json.Marshal(wireBanEvent{Kind: state.Added, Ban: b1, More: []state.Ban{b2}})
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		Kind state.EventKind `json:"k"`
		Ban  state.Ban       `json:"b"`
	}
	if err := json.Unmarshal(batch, &old); err != nil || old.Kind != state.Added || old.Ban != b1 {
		t.Fatalf("single-ban decode of a batch = %+v, %v", old, err)
	}
	evs, err := decodeBanEvents(string(batch))
	if err != nil || len(evs) != 2 || evs[0].Ban != b1 || !evs[1].Ban.Expires.Equal(b2.Expires) || evs[1].Kind != state.Added {
		t.Fatalf("decode batch = %+v, %v", evs, err)
	}
	single := `{"k":1,"b":{"prefix":"192.0.2.1/32","permanent":false,"reason":"","server":"","strikes":0,"created":"0001-01-01T00:00:00Z"}}`
	evs, err = decodeBanEvents(single)
	if err != nil || len(evs) != 1 || evs[0].Kind != state.Removed || evs[0].Ban.Prefix != b1.Prefix {
		t.Fatalf("decode single = %+v, %v", evs, err)
	}
	if _, err := decodeBanEvents("{"); err == nil {
		t.Fatal("decode of a broken message: no error")
	}
}
