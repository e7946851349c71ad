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

// Stored bans use a compact form, about ten times cheaper to decode than
// JSON, which matters when an agent re-lists 100,000 bans after a Resync:
//
//	prefix NUL P|T NUL expires-unix-nanos NUL created-unix-nanos NUL strikes NUL server NUL reason
//
// A server name holding NUL is stored as JSON instead; decodeBan reads both.

func encodeBan(b state.Ban) ([]byte, error) {
	if strings.IndexByte(b.Server, 0) >= 0 {
		return json.Marshal(b)
	}
	kind := "T"
	var exp int64
	if b.Permanent {
		kind = "P"
	} else {
		exp = b.Expires.UnixNano()
	}
	var created int64
	if !b.Created.IsZero() {
		created = b.Created.UnixNano()
	}
	out := make([]byte, 0, 64+len(b.Server)+len(b.Reason))
	out = b.Prefix.AppendTo(out)
	out = append(out, 0)
	out = append(out, kind...)
	out = append(out, 0)
	out = strconv.AppendInt(out, exp, 10)
	out = append(out, 0)
	out = strconv.AppendInt(out, created, 10)
	out = append(out, 0)
	out = strconv.AppendInt(out, b.Strikes, 10)
	out = append(out, 0)
	out = append(out, b.Server...)
	out = append(out, 0)
	out = append(out, b.Reason...)
	return out, nil
}

func decodeBan(v string) (state.Ban, error) {
	var b state.Ban
	if strings.HasPrefix(v, "{") {
		err := json.Unmarshal([]byte(v), &b)
		return b, err
	}
	var f [6]string
	rest := v
	for i := range f {
		var ok bool
		f[i], rest, ok = strings.Cut(rest, "\x00")
		if !ok {
			return b, fmt.Errorf("stored ban %q: %d fields, want 7", v, i+1)
		}
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return b, fmt.Errorf("stored ban %q: %w", v, err)
	}
	exp, err1 := strconv.ParseInt(f[2], 10, 64)
	created, err2 := strconv.ParseInt(f[3], 10, 64)
	strikes, err3 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || f[1] != "P" && f[1] != "T" {
		return b, fmt.Errorf("stored ban %q: bad field", v)
	}
	b = state.Ban{Prefix: p, Permanent: f[1] == "P", Strikes: strikes, Server: f[5], Reason: rest}
	if !b.Permanent {
		b.Expires = time.Unix(0, exp)
	}
	if created != 0 {
		b.Created = time.Unix(0, created)
	}
	return b, nil
}
