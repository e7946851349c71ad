package agi

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

const capture = "/work/shared/asterisk-transcripts/agi-session.txt"

// step is one captured chunk: from Asterisk ("<<") or to it (">>").
type step struct {
	fromAsterisk bool
	text         string
}

// readCapture splits agi-session.txt into its connections.
func readCapture(t testing.TB) [][]step {
	t.Helper()
	data, err := os.ReadFile(capture)
	if err != nil {
		t.Skipf("capture missing: %v", err)
	}
	var conns [][]step
	for _, line := range strings.Split(string(data), "\n") {
		_, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "=== FastAGI connection"):
			conns = append(conns, nil)
		case strings.HasPrefix(rest, "<< "), strings.HasPrefix(rest, ">> "):
			text, err := strconv.Unquote(rest[3:])
			if err != nil {
				t.Fatalf("capture line %q: %v", line, err)
			}
			conns[len(conns)-1] = append(conns[len(conns)-1], step{rest[0] == '<', text})
		}
	}
	return conns
}

// replayServer plays the AGI server side of steps: it checks every byte
// Asterisk (the simulator) sends and sends the captured commands.
func replayServer(t *testing.T, ln net.Listener, steps []step, port string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for _, st := range steps {
			if !st.fromAsterisk {
				if _, err := io.WriteString(c, st.text); err != nil {
					errc <- err
					return
				}
				continue
			}
			want := strings.Replace(st.text, "127.0.0.1:4573", "127.0.0.1:"+port, 1)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(r, got); err != nil {
				errc <- err
				return
			}
			if string(got) != want {
				errc <- &mismatch{got: string(got), want: want}
				return
			}
		}
		errc <- nil
	}()
	return errc
}

type mismatch struct{ got, want string }

func (m *mismatch) Error() string {
	return "got " + strconv.Quote(m.got) + ", want " + strconv.Quote(m.want)
}

func listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ln, port
}

// TestReplayCapture runs both captured connections and compares every byte
// the simulator sends with what Asterisk sent.
func TestReplayCapture(t *testing.T) {
	conns := readCapture(t)
	if len(conns) != 2 {
		t.Fatalf("capture has %d connections, want 2", len(conns))
	}
	args := []string{"1001", "25", "TtWw", "1001"}
	t.Run("connection 1", func(t *testing.T) {
		ln, port := listen(t)
		errc := replayServer(t, ln, conns[0], port)
		res, err := Dial(context.Background(), "agi://127.0.0.1:"+port+"/dialLocal", Channel{}, args)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if res.Status != "SUCCESS" || res.Vars["AGISTATUS"] != "SUCCESS" || res.HungUp {
			t.Fatalf("status %q hung up %v", res.Status, res.HungUp)
		}
		if res.Vars["AIM_RESULT"] != "ok" || res.Vars["DIALSTATUS"] != "CHANUNAVAIL" {
			t.Fatalf("vars %v", res.Vars)
		}
		if len(res.Commands) != 11 || res.Commands[10] != "NOSUCHCOMMAND foo" {
			t.Fatalf("commands %q", res.Commands)
		}
	})
	t.Run("connection 2", func(t *testing.T) {
		ln, port := listen(t)
		errc := replayServer(t, ln, conns[1], port)
		ch := Channel{Name: "Local/7000@default-00000001;2", UniqueID: "aim-a-1795606036.3", ThreadID: "140401130022592"}
		res, err := Dial(context.Background(), "agi://127.0.0.1:"+port+"/dialLocal", ch, args, WithHangupDuring(2))
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if res.Status != "HANGUP" || res.Vars["AGISTATUS"] != "HANGUP" || !res.HungUp {
			t.Fatalf("status %q hung up %v", res.Status, res.HungUp)
		}
	})
}
