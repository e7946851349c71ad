package agi

import (
	"bufio"
	"context"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	cases := map[string][]string{
		`GET VARIABLE CHANNEL`:                 {"GET", "VARIABLE", "CHANNEL"},
		`SET VARIABLE "dialString" "a b,25"`:   {"SET", "VARIABLE", "dialString", "a b,25"},
		`VERBOSE "dialLocal from probe" 1`:     {"VERBOSE", "dialLocal from probe", "1"},
		`SET VARIABLE x ""`:                    {"SET", "VARIABLE", "x", ""},
		"a\t b":                                {"a", "b"},
		`a\ b`:                                 {"a b"},
		`a\"b`:                                 {`a"b`},
		`ab"cd ef"g`:                           {"abcd efg"},
		`x \\`:                                 {"x", `\`},
		``:                                     nil,
		`   `:                                  nil,
		`EXEC Dial "PJSIP/1001&PJSIP/1002,25"`: {"EXEC", "Dial", "PJSIP/1001&PJSIP/1002,25"},
	}
	for in, want := range cases {
		if got := parseArgs(in); !reflect.DeepEqual(got, want) {
			t.Errorf("parseArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitAppArgs(t *testing.T) {
	cases := []struct {
		in   string
		url  string
		args []string
	}{
		{"agi://127.0.0.1:4573/dialLocal,1001,25,TtWw,1001", "agi://127.0.0.1:4573/dialLocal", []string{"1001", "25", "TtWw", "1001"}},
		{"agi://10.0.0.1:4573,dialLocal,1001,25", "agi://10.0.0.1:4573", []string{"dialLocal", "1001", "25"}},
		{`agi://h/s,"a,b",c\,d,f(x,y)`, "agi://h/s", []string{"a,b", "c,d", "f(x,y)"}},
		{"agi://h/s,1001,", "agi://h/s", []string{"1001", ""}},
		{"agi://h/s", "agi://h/s", []string{}},
		{"", "", nil},
	}
	for _, c := range cases {
		u, a := SplitAppArgs(c.in)
		if u != c.url || len(a) != len(c.args) || (len(a) > 0 && !reflect.DeepEqual(a, c.args)) {
			t.Errorf("SplitAppArgs(%q) = %q %q, want %q %q", c.in, u, a, c.url, c.args)
		}
	}
}

func TestParseURL(t *testing.T) {
	good := map[string]Target{
		"agi://127.0.0.1/dialLocal":     {Request: "agi://127.0.0.1/dialLocal", Addr: "127.0.0.1:4573", Script: "dialLocal"},
		"AGI://h:4000":                  {Request: "AGI://h:4000", Addr: "h:4000"},
		"agi://[::1]:4574/a/b?x=1":      {Request: "agi://[::1]:4574/a/b?x=1", Addr: "[::1]:4574", Script: "a/b?x=1"},
		"agi://[2001:db8::1]/dialLocal": {Request: "agi://[2001:db8::1]/dialLocal", Addr: "[2001:db8::1]:4573", Script: "dialLocal"},
	}
	for in, want := range good {
		if got, err := ParseURL(in); err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://h/x", "agi://", "agi:///x", "agi://h:0/x", "agi://h:99999", "agi://h:x/", "agi://a b/"} {
		if _, err := ParseURL(bad); err == nil || !strings.HasPrefix(err.Error(), "agi: ") {
			t.Errorf("ParseURL(%q): err %v", bad, err)
		}
	}
}

// script is a hand-written AGI server: it sends lines and records replies.
func script(t *testing.T, lines []string, replyLines []int) (addr string, got <-chan []string) {
	t.Helper()
	ln, port := listen(t)
	out := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		var env []string
		for {
			l, err := r.ReadString('\n')
			if err != nil || l == "\n" {
				break
			}
			env = append(env, l)
		}
		var replies []string
		for i, l := range lines {
			_, _ = io.WriteString(c, l+"\n")
			for range replyLines[i] {
				rl, err := r.ReadString('\n')
				if err != nil {
					break
				}
				replies = append(replies, rl)
			}
		}
		out <- append(env, replies...)
	}()
	return "127.0.0.1:" + port, out
}

func TestCommandsAndDeadChannel(t *testing.T) {
	lines := []string{
		"ANSWER", "CHANNEL STATUS", "CHANNEL STATUS Other/1", "GET FULL VARIABLE ${CHANNEL}-${EXTEN} " + "Local/7000@default-00000000;2",
		"GET FULL VARIABLE x Other/1", "get variable EXTEN", "EXEC Set FOO=bar", "GET VARIABLE FOO", "EXEC NoSuchApp",
		"GET VARIABLE", "GET", "HANGUP", "ANSWER", "GET VARIABLE FOO", "EXEC Wait 5",
	}
	replies := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1}
	addr, got := script(t, lines, replies)
	res, err := Dial(context.Background(), "agi://"+addr+"/x", Channel{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := <-got
	replyText := strings.Join(all[len(all)-16:], "")
	want := "200 result=0\n200 result=6\n200 result=-1\n200 result=1 (Local/7000@default-00000000;2-7000)\n" +
		"200 result=0\n200 result=1 (7000)\n200 result=0\n200 result=1 (bar)\n200 result=-2\n" +
		replyUsage + replyUnknown + "200 result=1\nHANGUP\n" + replyDead + "200 result=1 (bar)\n200 result=-1\n"
	if replyText != want {
		t.Fatalf("replies:\n%s\nwant:\n%s", replyText, want)
	}
	if res.Status != "HANGUP" || res.Vars["FOO"] != "bar" {
		t.Fatalf("status %s vars %v", res.Status, res.Vars)
	}
}

func TestFailureAndUnreachable(t *testing.T) {
	addr, _ := script(t, []string{"FAILURE"}, []int{0})
	res, err := Dial(context.Background(), "agi://"+addr, Channel{}, []string{"dialLocal"})
	if err != nil || res.Status != "FAILURE" || res.Vars["AGISTATUS"] != "FAILURE" {
		t.Fatalf("FAILURE command: %+v %v", res, err)
	}
	ln, port := listen(t)
	ln.Close()
	res, err = Dial(context.Background(), "agi://127.0.0.1:"+port+"/dialLocal", Channel{}, nil)
	if err == nil || res.Status != "FAILURE" || !strings.HasPrefix(err.Error(), "agi: connect") {
		t.Fatalf("unreachable: %+v %v", res, err)
	}
	if _, err := DialApp(context.Background(), "", Channel{}); err == nil {
		t.Fatal("empty AGI() argument accepted")
	}
	if res, err := DialApp(context.Background(), "/var/lib/asterisk/agi-bin/x.agi,1", Channel{}); err == nil || res.Status != "NOTFOUND" {
		t.Fatalf("local script: %+v %v", res, err)
	}
}

// TestSeedFormEnvironment: the seed's form sends no agi_network_script and
// dialLocal arrives as agi_arg_1; there are at least the 18 variables
// zaf/agi needs.
func TestSeedFormEnvironment(t *testing.T) {
	addr, got := script(t, nil, nil)
	if _, err := DialApp(context.Background(), "agi://"+addr+",dialLocal,1001,25", Channel{}); err != nil {
		t.Fatal(err)
	}
	env := <-got
	text := strings.Join(env, "")
	if strings.Contains(text, "agi_network_script") || !strings.Contains(text, "agi_request: agi://"+addr+"\n") ||
		!strings.Contains(text, "agi_arg_1: dialLocal\nagi_arg_2: 1001\nagi_arg_3: 25\n") || len(env) < 18 {
		t.Fatalf("environment:\n%s", text)
	}
}

func TestContextEndsSession(t *testing.T) {
	ln, port := listen(t)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // never answers, never closes
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, "agi://127.0.0.1:"+port+"/x", Channel{}, nil)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dial ignored ctx")
	}
}

// TestPipelinedCommandsWaitForMoreBytes: run_agi polls the socket before
// each command, so the second of two commands sent in one write is seen only
// when more bytes or the end of the server's side arrive (res_agi.c,
// run_agi: ast_waitfor_nandfds on the socket, then fgets on its FILE).
func TestPipelinedCommandsWaitForMoreBytes(t *testing.T) {
	for _, halfClose := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		type outcome struct {
			early string // replies read before the server closed its side
			err   error
		}
		done := make(chan outcome, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- outcome{err: err}
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for { // the environment
				l, err := r.ReadString('\n')
				if err != nil {
					done <- outcome{err: err}
					return
				}
				if l == "\n" {
					break
				}
			}
			io.WriteString(c, "SET VARIABLE A 1\nSET VARIABLE B 2\n")
			if halfClose {
				c.(*net.TCPConn).CloseWrite()
			}
			var early strings.Builder
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)) // absence needs a window
			for {
				l, err := r.ReadString('\n')
				early.WriteString(l)
				if err != nil {
					break
				}
			}
			done <- outcome{early: early.String()}
		}()
		res, err := Dial(context.Background(), "agi://"+ln.Addr().String()+"/x", Channel{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		o := <-done
		if o.err != nil {
			t.Fatal(o.err)
		}
		want := "200 result=1\n" // the second command waits in the stdio buffer
		if halfClose {
			want = "200 result=1\n200 result=1\n"
		}
		if !strings.HasPrefix(o.early, want) || (!halfClose && o.early != want) {
			t.Errorf("halfClose=%v: replies before the server closed: %q, want %q", halfClose, o.early, want)
		}
		if res.Status != "SUCCESS" || res.Vars["A"] != "1" || res.Vars["B"] != "2" {
			t.Errorf("halfClose=%v: status %s vars %v", halfClose, res.Status, res.Vars)
		}
	}
}
