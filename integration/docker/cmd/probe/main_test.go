package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"nonsense"},
		{"register"}, // no server, no user
		{"register", "-server", "127.0.0.1:1", "-user", "1001", "-count", "0"},
		{"register", "-server", "no-port", "-user", "1001"},
		{"agi"},
		{"agi", "a", "b"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
		if errb.Len() == 0 {
			t.Errorf("%q: no message on stderr", args)
		}
	}
}

// A registrar that swallows every request gives exit 3 and "no answer", the
// signal the docker test reads as a kernel drop.
func TestRegisterNoAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"register", "-server", pc.LocalAddr().String(),
		"-user", "1001", "-password", "x", "-timeout", "100ms", "-count", "2"}, &out, &errb)
	if code != exitNoAnswer {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitNoAnswer, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON line per request, got %q", out.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil || r.Error != "no answer" || r.Status != 0 {
		t.Fatalf("line %q: %+v %v", lines[0], r, err)
	}
}

// An AGI server that is not there fails with exit 1 and says why.
func TestAGIUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"agi", "agi://" + addr + "/dialLocal,1001"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var r AGIResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Error == "" || r.Status != "FAILURE" {
		t.Fatalf("output %q: %+v %v", out.String(), r, err)
	}
}
