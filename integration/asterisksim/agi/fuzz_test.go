package agi

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// FuzzCommand feeds arbitrary command lines to a session: every reply is a
// single res_agi status line (or the 200+HANGUP pair never: HANGUP is sent
// separately), and nothing panics or blocks.
func FuzzCommand(f *testing.F) {
	for _, st := range readCaptureSteps(f) {
		f.Add(strings.TrimSuffix(st, "\n"))
	}
	for _, s := range []string{`SET VARIABLE "a b" "c\"d"`, "EXEC Wait 100000", `GET FULL VARIABLE ${X${Y}}`,
		"GET FULL VARIABLE ${", "hangup", "CHANNEL STATUS a b c", "\"", `\`, "EXEC Set =x"} {
		f.Add(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // blocking applications return at once
	f.Fuzz(func(t *testing.T, line string) {
		s := &session{cfg: config{dialStatus: func(string) string { return "BUSY" }, log: slog.New(slog.DiscardHandler)},
			ch: Channel{}.withDefaults(), hup: make(chan struct{}), res: &Result{Vars: map[string]string{}}}
		reply := s.handle(ctx, line, false)
		if !strings.HasSuffix(reply, "\n") {
			t.Fatalf("%q: reply %q has no newline", line, reply)
		}
		ok := false
		for _, p := range []string{"200 result=", "510 ", "511 ", "520 "} {
			ok = ok || strings.HasPrefix(reply, p)
		}
		if !ok {
			t.Fatalf("%q: reply %q", line, reply)
		}
		if strings.HasPrefix(reply, "200 result=1 (") && !strings.Contains(line, "\n") &&
			strings.Count(reply, "\n") != 1 {
			t.Fatalf("%q: multi-line reply %q", line, reply)
		}
	})
}

// FuzzSplitAppArgs: the dialplan argument parser and URL parser never
// panic; a parsed URL always has a host:port.
func FuzzSplitAppArgs(f *testing.F) {
	for _, s := range []string{"agi://127.0.0.1:4573/dialLocal,1001,25,TtWw,1001", "agi://h:4573,dialLocal,1001",
		`agi://h/s,"a,b",c\,d,f(x,y)`, "agi://[::1]/x,", "agi://h:/x", ",,,", `\`, `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		u, args := SplitAppArgs(data)
		if len(args) > maxArgs {
			t.Fatalf("%d args", len(args))
		}
		tg, err := ParseURL(u)
		if err != nil {
			return
		}
		if tg.Addr == "" || tg.Request != u {
			t.Fatalf("%q: %+v", u, tg)
		}
	})
}

func readCaptureSteps(f *testing.F) []string {
	var out []string
	for _, conn := range readCapture(f) {
		for _, st := range conn {
			if !st.fromAsterisk {
				out = append(out, st.text)
			}
		}
	}
	return out
}
