package ari

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// restPool does ARI's REST calls over keep-alive HTTP/1.1 connections,
// writing each request and reading its reply on the calling goroutine.
//
// Why not net/http's Transport: it hands every request to a per-connection
// writer goroutine and the reply back from a reader goroutine. At thousands
// of PUTs a second those two wake-ups per call cost more CPU than the call
// (profile of the Busy Lamp benchmark: scheduler and futex ~25% of the
// process), and at low rates each adds latency. ARI's calls are small,
// idempotent and answered with a Content-Length, so a plain pool suffices.
type restPool struct {
	base    string // escaped path of the REST root, e.g. "/ari"
	addr    string // host:port to dial
	host    string // Host header
	dial    func(ctx context.Context) (net.Conn, error)
	maxIdle int

	mu     sync.Mutex
	idle   []*restConn // most recently used last
	closed bool
}

// restConn is one keep-alive connection.
type restConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time
}

// idleFor bounds how long an idle connection is reused: Asterisk closes a
// kept-alive HTTP session after session_keep_alive (15 s by default), and
// a request on a connection it just closed must be retried.
const idleFor = 10 * time.Second

// maxReply bounds a reply body (a listing of every Stasis: state of a
// large cluster is a few MB).
const maxReply = 64 << 20

func newRestPool(rawURL string, dialTimeout time.Duration) (*restPool, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ari: url: %w", err)
	}
	p := &restPool{base: u.EscapedPath(), host: u.Host, maxIdle: 64}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p.addr = net.JoinHostPort(u.Hostname(), port)
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	switch u.Scheme {
	case "http":
		p.dial = func(ctx context.Context) (net.Conn, error) { return nd.DialContext(ctx, "tcp", p.addr) }
	case "https":
		td := &tls.Dialer{NetDialer: nd, Config: &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}}
		p.dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", p.addr) }
	default:
		return nil, fmt.Errorf("ari: url: scheme %q is not http or https", u.Scheme)
	}
	return p, nil
}

// get returns an idle connection (reused true) or dials a new one.
func (p *restPool) get(ctx context.Context) (cn *restConn, reused bool, err error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		cn = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(cn.used) < idleFor {
			p.mu.Unlock()
			return cn, true, nil
		}
		cn.c.Close()
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, false, ErrClosed
	}
	c, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &restConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 1024)}, false, nil
}

// put keeps cn for the next call, or closes it.
func (p *restPool) put(cn *restConn) {
	cn.used = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, cn)
		cn = nil
	}
	p.mu.Unlock()
	if cn != nil {
		cn.c.Close()
	}
}

// close closes the idle connections; calls in flight close theirs.
func (p *restPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, cn := range idle {
		cn.c.Close()
	}
}

// reply is a complete HTTP reply.
type reply struct {
	code int
	body []byte
}

// call sends method requestURI (path and query, escaped) with the given
// Authorization and returns the reply, bounded by ctx. A reused connection
// that fails before any byte of the reply arrived (the server closed it
// while idle) is retried once on a new one: ARI's calls are idempotent.
func (p *restPool) call(ctx context.Context, method, requestURI, auth string) (reply, error) {
	for attempt := 0; ; attempt++ {
		cn, reused, err := p.get(ctx)
		if err != nil {
			return reply{}, ctxErr(ctx, err)
		}
		r, keep, replied, err := cn.roundTrip(ctx, p.host, method, requestURI, auth)
		if err == nil {
			if keep {
				p.put(cn)
			} else {
				cn.c.Close()
			}
			return r, nil
		}
		cn.c.Close()
		if reused && !replied && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return reply{}, ctxErr(ctx, err)
	}
}

// ctxErr reports a failure caused by ctx (its deadline is the connection's)
// as ctx's error, so callers can tell a timeout with errors.Is.
func ctxErr(ctx context.Context, err error) error {
	if e := ctx.Err(); e != nil {
		return e
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// roundTrip writes one request and reads its reply. replied tells whether
// any of the reply was read; keep whether the connection can be reused.
func (cn *restConn) roundTrip(ctx context.Context, host, method, requestURI, auth string) (r reply, keep, replied bool, err error) {
	if d, ok := ctx.Deadline(); ok {
		cn.c.SetDeadline(d)
	} else {
		cn.c.SetDeadline(time.Time{})
	}
	// Cancellation unblocks the read or write at once.
	stop := context.AfterFunc(ctx, func() { cn.c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// ctx ended as the reply came: the past deadline may land
			// after the next call set its own, failing that call.
			keep = false
		}
	}()

	w := cn.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(requestURI)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\nUser-Agent: doorman\r\nAuthorization: ")
	w.WriteString(auth)
	if method != http.MethodGet {
		w.WriteString("\r\nContent-Length: 0")
	}
	w.WriteString("\r\n\r\n")
	if err := w.Flush(); err != nil {
		return reply{}, false, false, err
	}

	if _, err := cn.br.Peek(1); err != nil {
		return reply{}, false, false, err
	}
	resp, err := http.ReadResponse(cn.br, &http.Request{Method: method})
	// An interim 1xx reply (100 Continue, 103 Early Hints) precedes the
	// real one on the same connection: taken as the reply, it would leave
	// the real one to answer the next call.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(cn.br, &http.Request{Method: method})
	}
	if err != nil {
		return reply{}, false, true, err
	}
	defer func() {
		if err != nil {
			// Body.Close reads the rest of a body with a length or chunks
			// (up to the deadline): a failed reply's connection is not
			// reused, so close it first and nothing is drained.
			cn.c.Close()
		}
		resp.Body.Close()
	}()
	var body []byte
	switch n := resp.ContentLength; {
	case n == 0: // a PUT's 204: nothing to read or allocate
	case n > maxReply:
		return reply{}, false, true, fmt.Errorf("reply of %d bytes, more than %d", n, maxReply)
	case n > 0:
		body = make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return reply{}, false, true, err
		}
	default:
		if body, err = io.ReadAll(io.LimitReader(resp.Body, maxReply+1)); err != nil {
			return reply{}, false, true, err
		}
		if len(body) > maxReply {
			return reply{}, false, true, fmt.Errorf("reply larger than %d bytes", maxReply)
		}
	}
	if resp.ContentLength < 0 && !resp.Close && len(resp.TransferEncoding) == 0 {
		// No length and not chunked: the body ran to the end of the
		// connection; ReadAll saw it close.
		resp.Close = true
	}
	return reply{code: resp.StatusCode, body: body}, !resp.Close, true, nil
}
