package redisstore

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// wireBanEvent is a ban feed message. PutBans sends one message per batch
// that carries every ban in More, in the compact form of appendFeedBan,
// which costs a fraction of JSON to write and to read on every agent, and
// the first ban in Ban as well, where single-ban messages carry it: an agent
// that does not know More still takes that one and finds the others at its
// next listing of the store.
type wireBanEvent struct {
	Kind state.EventKind `json:"k"`
	Ban  state.Ban       `json:"b"`
	More string          `json:"more,omitempty"`
}

func encodeBanEvents(kind state.EventKind, bans []state.Ban) ([]byte, error) {
	w := wireBanEvent{Kind: kind, Ban: bans[0]}
	if len(bans) > 1 {
		buf := make([]byte, 0, 80*len(bans))
		for _, b := range bans {
			buf = appendFeedBan(buf, b)
		}
		w.More = string(buf)
	}
	return json.Marshal(w)
}

func decodeBanEvents(payload string) ([]state.BanEvent, error) {
	// Ban is kept raw: in a batch it is decoded from More instead, which
	// is much cheaper than JSON's reflection and time parsing.
	var w struct {
		Kind state.EventKind `json:"k"`
		Ban  json.RawMessage `json:"b"`
		More string          `json:"more"`
	}
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return nil, err
	}
	if w.More == "" {
		var b state.Ban
		if err := json.Unmarshal(w.Ban, &b); err != nil {
			return nil, err
		}
		return []state.BanEvent{{Kind: w.Kind, Ban: b}}, nil
	}
	evs := make([]state.BanEvent, 0, 16)
	for rest := w.More; rest != ""; {
		var b state.Ban
		var err error
		b, rest, err = cutFeedBan(rest)
		if err != nil {
			return nil, fmt.Errorf("ban %d of a batch: %w", len(evs)+1, err)
		}
		evs = append(evs, state.BanEvent{Kind: w.Kind, Ban: b})
	}
	return evs, nil
}

// appendFeedBan appends one ban as seven space-terminated fields, then the
// server and reason themselves (whose lengths are fields 6 and 7):
//
//	prefix P|T expires-unix-nanos created-unix-nanos strikes len(server) len(reason) server reason
func appendFeedBan(buf []byte, b state.Ban) []byte {
	buf = b.Prefix.AppendTo(buf)
	if b.Permanent {
		buf = append(buf, " P 0 "...)
	} else {
		buf = append(buf, " T "...)
		buf = strconv.AppendInt(buf, b.Expires.UnixNano(), 10)
		buf = append(buf, ' ')
	}
	var created int64
	if !b.Created.IsZero() {
		created = b.Created.UnixNano()
	}
	buf = strconv.AppendInt(buf, created, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, b.Strikes, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(len(b.Server)), 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(len(b.Reason)), 10)
	buf = append(buf, ' ')
	buf = append(buf, b.Server...)
	return append(buf, b.Reason...)
}

// cutFeedBan reads the ban appendFeedBan wrote at the start of s.
func cutFeedBan(s string) (state.Ban, string, error) {
	var f [7]string
	rest := s
	for i := range f {
		var ok bool
		f[i], rest, ok = strings.Cut(rest, " ")
		if !ok {
			return state.Ban{}, "", fmt.Errorf("feed ban: %d fields, want 7", i)
		}
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return state.Ban{}, "", fmt.Errorf("feed ban: %w", err)
	}
	var n [5]int64
	for i := range n {
		if n[i], err = strconv.ParseInt(f[2+i], 10, 64); err != nil {
			return state.Ban{}, "", fmt.Errorf("feed ban %v: field %d: %w", p, 3+i, err)
		}
	}
	ls, lr := n[3], n[4]
	if f[1] != "P" && f[1] != "T" || ls < 0 || lr < 0 || ls > int64(len(rest)) || lr > int64(len(rest))-ls {
		return state.Ban{}, "", fmt.Errorf("feed ban %v: bad kind or lengths", p)
	}
	b := state.Ban{Prefix: p, Permanent: f[1] == "P", Strikes: n[2], Server: rest[:ls], Reason: rest[ls : ls+lr]}
	if !b.Permanent {
		b.Expires = time.Unix(0, n[0])
	}
	if n[1] != 0 {
		b.Created = time.Unix(0, n[1])
	}
	return b, rest[ls+lr:], nil
}
