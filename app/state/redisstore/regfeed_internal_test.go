package redisstore

import (
	"strconv"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// The decoder takes what the scripts publish, records with any bytes in
// them (a contact may hold ':' or digits), and rejects anything else.
func TestRegFeedDecode(t *testing.T) {
	js := `{"server":"pbx-a","aor":"1:2","contact":"sip:1@x:5060","expires":"2026-11-25T16:00:00Z"}`
	evs, err := decodeRegEvents("A" + strconv.Itoa(len(js)) + ":" + js + strconv.Itoa(len(js)) + ":" + js)
	if err != nil || len(evs) != 2 || evs[1].Kind != state.Added || evs[1].Registration.AOR != "1:2" {
		t.Fatalf("added: %+v, %v", evs, err)
	}
	id := "pbx-a\x001:2\x00sip:1@x:5060"
	evs, err = decodeRegEvents("R" + strconv.Itoa(len(id)) + ":" + id)
	if err != nil || len(evs) != 1 || evs[0].Kind != state.Removed || evs[0].Registration.Contact != "sip:1@x:5060" {
		t.Fatalf("removed: %+v, %v", evs, err)
	}
	hb := "pbx-b\x001700000000000"
	evs, err = decodeRegEvents("H" + strconv.Itoa(len(hb)) + ":" + hb)
	if err != nil || len(evs) != 1 || evs[0].Kind != state.ServerAlive || !evs[0].Registration.Expires.Equal(time.UnixMilli(1700000000000)) {
		t.Fatalf("heartbeat: %+v, %v", evs, err)
	}
	evs, err = decodeRegEvents("D5:pbx-c5:pbx-d")
	if err != nil || len(evs) != 2 || evs[1].Kind != state.ServerDown || evs[1].Registration.Server != "pbx-d" {
		t.Fatalf("down: %+v, %v", evs, err)
	}
	for _, bad := range []string{"", "X1:a", "A3:{}x", "A9:{}", "A-1:", "R3:a\x00b", "H5:pbx-b", "H7:a\x00notms", "Dx:"} {
		if evs, err := decodeRegEvents(bad); err == nil {
			t.Errorf("%q decoded as %+v", bad, evs)
		}
	}
}

func FuzzDecodeRegEvents(f *testing.F) {
	for _, s := range []string{"A2:{}", "R5:a\x00b\x00c", "H3:a\x001", "D1:a", "A9:{}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		evs, err := decodeRegEvents(s)
		if err == nil && len(s) > 1 && len(evs) == 0 {
			t.Fatalf("%q: no events and no error", s)
		}
	})
}
