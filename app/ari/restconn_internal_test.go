package ari

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRestPoolReusesAndRecovers: keep-alive connections are reused; one
// the server closed while idle is retried on a new connection; a reply
// with "Connection: close" is not reused; a hung call ends with ctx.
func TestRestPoolReusesAndRecovers(t *testing.T) {
	var conns atomic.Int64
	block := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ari/close":
			w.Header().Set("Connection", "close")
		case "/ari/block":
			<-block
		}
		if r.Header.Get("Authorization") != "Basic x" || r.URL.RawQuery != "a=b%2Fc" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(block)

	p, err := newRestPool(srv.URL+"/ari", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx := context.Background()
	call := func(path string) reply {
		t.Helper()
		r, err := p.call(ctx, http.MethodPut, p.base+path+"?a=b%2Fc", "Basic x")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if r.code != 200 || string(r.body) != `{"ok":true}` {
			t.Fatalf("%s: %d %q", path, r.code, r.body)
		}
		return r
	}
	for range 3 {
		call("/x")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 sequential calls; want 1 (keep-alive)", n)
	}
	srv.CloseClientConnections() // the server drops the idle connection
	call("/x")
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the server closed the idle one; want 2", n)
	}
	call("/close")
	call("/x")
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections after a Connection: close reply; want 3", n)
	}

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.call(cctx, http.MethodGet, p.base+"/block?a=b%2Fc", "Basic x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call: %v; want a deadline", err)
	}
}

// An interim 1xx reply is skipped: the call gets the final reply, and the
// next call on the kept-alive connection gets its own.
func TestRestPoolSkipsInterimReplies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			reply := "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + string(rune('a'+i))
			if i == 0 {
				reply = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + reply
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	}()
	p, err := newRestPool("http://"+ln.Addr().String()+"/ari", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, want := range []string{"a", "b"} {
		r, err := p.call(context.Background(), http.MethodGet, p.base+"/x", "Basic x")
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 200 || string(r.body) != want {
			t.Fatalf("reply %d %q; want 200 %q", r.code, r.body, want)
		}
	}
}

// heldConn holds back a deadline set in the past (a cancellation) until
// release, and runs onRead once when a read first returns data.
type heldConn struct {
	net.Conn
	onRead func()
	mu     sync.Mutex
	held   time.Time
	isHeld chan struct{}
}

func (c *heldConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.onRead != nil {
		f := c.onRead
		c.onRead = nil
		f()
	}
	return n, err
}

func (c *heldConn) SetDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.mu.Lock()
		c.held = t
		c.mu.Unlock()
		close(c.isHeld)
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *heldConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Conn.SetDeadline(c.held)
}

// A connection whose call's context ended as the reply came is not reused:
// the cancellation's past deadline, set by another goroutine, could land in
// the middle of the next call (which is then sent twice, or fails).
func TestRestPoolDropsConnOfLateCancel(t *testing.T) {
	var first atomic.Pointer[heldConn]
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 2 {
			first.Load().release() // the first call's cancellation lands now
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	p, err := newRestPool(srv.URL+"/ari", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := p.dial
	p.dial = func(ctx context.Context) (net.Conn, error) {
		c, err := dial(ctx)
		if err != nil || first.Load() != nil {
			return c, err
		}
		hc := &heldConn{Conn: c, onRead: cancel, isHeld: make(chan struct{})}
		first.Store(hc)
		return hc, nil
	}
	if _, err := p.call(ctx, http.MethodPut, p.base+"/x", "Basic x"); err != nil {
		t.Fatal(err)
	}
	<-first.Load().isHeld
	if _, err := p.call(context.Background(), http.MethodPut, p.base+"/x", "Basic x"); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("server saw %d requests for 2 calls; want 2 (the second was sent twice)", n)
	}
}

// TestRestPoolDropsOversizedReply: a reply larger than maxReply fails the
// call and the connection is closed at once, not drained to the end of
// the body first (which net/http's Body.Close would do).
func TestRestPoolDropsOversizedReply(t *testing.T) {
	const huge = 4 * maxReply
	data := make([]byte, 64<<10)
	chunk := append(append([]byte("10000\r\n"), data...), "\r\n"...)
	for _, tc := range []struct {
		name, header string
		piece        []byte
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(huge) + "\r\n\r\n", data},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			written := make(chan int, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					written <- -1
					return
				}
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					written <- -1
					return
				}
				n, _ := c.Write([]byte(tc.header))
				for n < huge {
					m, err := c.Write(tc.piece)
					n += m
					if err != nil {
						break
					}
				}
				written <- n
			}()
			p, err := newRestPool("http://"+ln.Addr().String()+"/ari", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			if _, err := p.call(context.Background(), http.MethodGet, "/ari/big", "Basic x"); err == nil {
				t.Fatal("a reply larger than maxReply was accepted")
			}
			// The client read at most maxReply+1 bytes of body; what the
			// server got out beyond that fits in the sockets' buffers.
			if n := <-written; n < 0 || n > maxReply+16<<20 {
				t.Fatalf("server wrote %d bytes before the connection closed; want at most %d", n, maxReply+16<<20)
			}
		})
	}
}
