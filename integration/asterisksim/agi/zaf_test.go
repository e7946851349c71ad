package agi

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	zaf "github.com/zaf/agi"
)

// serveZaf runs a FastAGI server built on github.com/zaf/agi, one Session
// per connection, until the test ends.
func serveZaf(t testing.TB, handle func(s *zaf.Session) error) (addr string, errs <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ec := make(chan error, 1024)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s := zaf.New()
				if err := s.Init(bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))); err != nil {
					ec <- fmt.Errorf("init: %w", err)
					return
				}
				if err := handle(s); err != nil {
					ec <- err
				}
			}()
		}
	}()
	return ln.Addr().String(), ec
}

// dialLocal is a doorman-like handler: it reads the extension from the
// script form or the seed's form and sets dialString.
func dialLocal(s *zaf.Session) error {
	args := []string{}
	for i := 1; ; i++ {
		v, ok := s.Env[fmt.Sprintf("arg_%d", i)]
		if !ok {
			break
		}
		args = append(args, v)
	}
	script := s.Env["network_script"]
	if script == "" && len(args) > 0 {
		script, args = args[0], args[1:]
	}
	if script != "dialLocal" || len(args) < 1 {
		return fmt.Errorf("bad request: script %q args %q", script, args)
	}
	if _, err := s.SetVariable("dialString", "PJSIP/trunk/sip:"+args[0]+"@10.0.0.2:5060,"+strings.Join(args[1:], ",")); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	if r, err := s.GetVariable("CHANNEL"); err != nil || r.Res != 1 || r.Dat != s.Env["channel"] {
		return fmt.Errorf("get CHANNEL: %+v %v", r, err)
	}
	if _, err := s.Verbose("doorman dialLocal "+args[0], 3); err != nil {
		return fmt.Errorf("verbose: %w", err)
	}
	return nil
}

func TestZafInterop(t *testing.T) {
	addr, errs := serveZaf(t, dialLocal)
	for _, form := range []string{
		"agi://" + addr + "/dialLocal,1001,25,TtWw,1001",
		"agi://" + addr + ",dialLocal,1001,25,TtWw,1001",
	} {
		t.Run(form, func(t *testing.T) {
			res, err := DialApp(context.Background(), form, Channel{Extension: "1001"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			if res.Status != "SUCCESS" {
				t.Fatalf("AGISTATUS %s", res.Status)
			}
			want := "PJSIP/trunk/sip:1001@10.0.0.2:5060,25,TtWw,1001"
			if res.Vars["dialString"] != want || len(res.Set) != 1 || res.Set[0] != (Var{"dialString", want}) {
				t.Fatalf("dialString %q set %v", res.Vars["dialString"], res.Set)
			}
		})
	}
}

// TestZafSeesHangup: a caller hanging up during EXEC Wait shows up in
// zaf/agi as -1 and then as the "HANGUP" error, and AGISTATUS is HANGUP.
func TestZafSeesHangup(t *testing.T) {
	got := make(chan string, 2)
	addr, _ := serveZaf(t, func(s *zaf.Session) error {
		r, err := s.Exec("Wait", "10")
		got <- fmt.Sprintf("%d %v", r.Res, err)
		_, err = s.GetVariable("CHANNEL")
		got <- fmt.Sprint(err)
		return nil
	})
	res, err := Dial(context.Background(), "agi://"+addr+"/dialLocal", Channel{}, nil, WithCallerHangup(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if w := <-got; w != "-1 <nil>" {
		t.Fatalf("Wait gave %s", w)
	}
	if w := <-got; w != "HANGUP" {
		t.Fatalf("next command gave %s, want the HANGUP error", w)
	}
	if res.Status != "HANGUP" || !res.HungUp {
		t.Fatalf("status %s", res.Status)
	}
}

func TestConcurrentSessions(t *testing.T) {
	addr, errs := serveZaf(t, dialLocal)
	const n = 200
	var wg sync.WaitGroup
	fails := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ext := fmt.Sprintf("%d", 2000+i)
			ch := Channel{UniqueID: fmt.Sprintf("sim-%d.%d", i, i), Name: fmt.Sprintf("PJSIP/%s-%08x", ext, i)}
			res, err := Dial(context.Background(), "agi://"+addr+"/dialLocal", ch, []string{ext, "25"})
			if err != nil {
				fails <- err.Error()
				return
			}
			if want := "PJSIP/trunk/sip:" + ext + "@10.0.0.2:5060,25"; res.Vars["dialString"] != want || res.Status != "SUCCESS" {
				fails <- fmt.Sprintf("%s: %q %s", ext, res.Vars["dialString"], res.Status)
			}
		}()
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Error(f)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
