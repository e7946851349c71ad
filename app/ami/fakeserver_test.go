package ami

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const banner = "Asterisk Call Manager/11.0.0\r\n"

// fakeAMI is an AMI server on loopback whose connections run handle.
type fakeAMI struct {
	ln      net.Listener
	accepts atomic.Int32
	mu      sync.Mutex
	times   []time.Time // accept times
}

// fakeConn is one accepted connection with a parser for the client's actions.
type fakeConn struct {
	t testing.TB
	net.Conn
	p *Parser
}

func startFake(t testing.TB, handle func(c *fakeConn)) *fakeAMI {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAMI{ln: ln}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			f.mu.Lock()
			f.times = append(f.times, time.Now())
			f.mu.Unlock()
			conns.Store(c, true)
			wg.Go(func() {
				defer c.Close()
				handle(&fakeConn{t: t, Conn: c, p: NewParser(c, ParserLimits{})})
			})
		}
	})
	return f
}

func (f *fakeAMI) addr() string { return f.ln.Addr().String() }

func (f *fakeAMI) acceptTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

// readAction returns the client's next action, or false when it is gone.
func (c *fakeConn) readAction() (Message, bool) {
	for {
		var m Message
		err := c.p.Next(&m)
		var se *SyntaxError
		if errors.As(err, &se) {
			c.t.Errorf("client sent a malformed line: %v", err)
			continue
		}
		return m, err == nil
	}
}

func (c *fakeConn) write(s string) bool {
	_, err := io.WriteString(c.Conn, s)
	return err == nil
}

// login answers the banner and a plaintext Login like Asterisk does.
func (c *fakeConn) login(user, secret string) (Message, bool) {
	if !c.write(banner) {
		return Message{}, false
	}
	m, ok := c.readAction()
	if !ok {
		return m, false
	}
	if m.Get("Action") != "Login" || m.Get("Username") != user || m.Get("Secret") != secret {
		c.write("Response: Error\r\nActionID: " + m.Get("ActionID") + "\r\nMessage: Authentication failed\r\n\r\n")
		return m, false
	}
	return m, c.write("Response: Success\r\nActionID: " + m.Get("ActionID") + "\r\nMessage: Authentication accepted\r\n\r\n")
}

// wait blocks until the client closes the connection.
func (c *fakeConn) wait() {
	_, _ = io.Copy(io.Discard, c.Conn)
}

var actionIDRe = regexp.MustCompile(`(?m)^ActionID: ([^\r\n]*)`)

// captureChunks splits a captured s2c stream (after its banner) into its
// messages, byte for byte, and groups them by captured ActionID. The extra
// CRLF after "No Contacts found\n\r\n" stays inside its chunk.
func captureChunks(raw []byte) map[string][][]byte {
	_, body, _ := bytes.Cut(raw, []byte("\r\n"))
	out := map[string][][]byte{}
	for _, ch := range bytes.SplitAfter(body, []byte("\r\n\r\n")) {
		if len(ch) == 0 {
			continue
		}
		id := ""
		if m := actionIDRe.FindSubmatch(ch); m != nil {
			id = string(m[1])
		}
		out[id] = append(out[id], ch)
	}
	return out
}

func withID(chunk []byte, id string) string {
	return actionIDRe.ReplaceAllLiteralString(string(chunk), "ActionID: "+id)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger logs everything at debug level into a buffer and, at cleanup,
// fails the test if any of secrets appears in it.
func testLogger(t testing.TB, secrets ...string) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		out := buf.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("secret %q found in the log:\n%s", s, out)
			}
		}
		if t.Failed() {
			t.Logf("client log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// runClient starts c.Run and stops it at cleanup, checking that Run returns.
func runClient(t testing.TB, c *Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv reads one message or fails after a deadline.
func recv(t *testing.T, ch <-chan Message) Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for an event")
	}
	return Message{}
}

func testConfig(addr string) Config {
	return Config{
		Addr: addr, Username: "aim", Secret: "aimsecret",
		PingInterval: -1, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		LoginTimeout: 2 * time.Second,
	}
}
