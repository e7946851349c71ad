package ari

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// writeTimeout bounds one websocket write; a client that cannot take a
// message in this time is dropped, like Asterisk's websocket_write_timeout.
const writeTimeout = 5 * time.Second

// wsConn is one /ari/events websocket and the apps it serves. It exists
// (and queues events) from just before the upgrade, so that an event raised
// right after the client's handshake completes is not lost.
type wsConn struct {
	apps       []string
	asteriskID string
	queue      chan []byte
	done       chan struct{}
	closeOnce  sync.Once
	overflowed bool // set once, under closeOnce, before done closes

	mu sync.Mutex
	ws *websocket.Conn // nil until the upgrade succeeded
}

// attach sets the upgraded connection, closing it at once if the wsConn was
// closed meanwhile (overflow before the upgrade finished).
func (c *wsConn) attach(ws *websocket.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws = ws
	select {
	case <-c.done:
		_ = ws.Close()
	default:
	}
}

// send queues msg without ever blocking; a full queue closes the websocket.
func (c *wsConn) send(msg []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.queue <- msg:
		return true
	default:
		c.close(true)
		return false
	}
}

func (c *wsConn) close(overflow bool) {
	c.closeOnce.Do(func() {
		c.overflowed = overflow
		close(c.done)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ws != nil {
			_ = c.ws.Close()
		}
	})
}

// burstBytes bounds the frames one socket write carries.
const burstBytes = 64 << 10

// writer drains the queue into ws until the connection ends. A burst of
// queued events leaves in one socket write: the same frames, fewer
// syscalls, so the simulator costs less CPU than the client it serves.
func (c *wsConn) writer(ws *websocket.Conn, bc *burstConn) {
	for {
		var msg []byte
		select {
		case <-c.done:
			return
		case msg = <-c.queue:
		}
		bc.hold()
		err := ws.WriteMessage(websocket.TextMessage, msg)
		for more := true; more && err == nil && bc.held() < burstBytes; {
			select {
			case msg = <-c.queue:
				err = ws.WriteMessage(websocket.TextMessage, msg)
			default:
				more = false
			}
		}
		if ferr := bc.flush(time.Now().Add(writeTimeout)); err == nil {
			err = ferr
		}
		if err != nil {
			c.close(false)
			return
		}
	}
}

// burstConn is the websocket's connection; between hold and flush it
// keeps writes back, so that several frames leave in one write. Writes
// outside a hold (the handshake, control frames) go out at once.
type burstConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
}

func (b *burstConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.holding {
		b.buf = append(b.buf, p...)
		b.mu.Unlock()
		return len(p), nil
	}
	b.mu.Unlock()
	return b.Conn.Write(p)
}

func (b *burstConn) hold() {
	b.mu.Lock()
	b.holding = true
	b.mu.Unlock()
}

func (b *burstConn) held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// flush writes what was held, bounded by deadline, and stops holding.
func (b *burstConn) flush(deadline time.Time) error {
	b.mu.Lock()
	out := b.buf
	b.buf, b.holding = nil, false
	b.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	_ = b.Conn.SetWriteDeadline(deadline)
	_, err := b.Conn.Write(out)
	return err
}

// burstWriter hands the websocket upgrader a burstConn when it hijacks
// the connection.
type burstWriter struct {
	http.ResponseWriter
	conn *burstConn
}

func (w *burstWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("ari: response cannot be hijacked")
	}
	c, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &burstConn{Conn: c}
	return w.conn, brw, nil
}

// astTrue is ast_true.
func astTrue(s string) bool {
	switch strings.ToLower(s) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

var upgrader = websocket.Upgrader{
	// Asterisk does not check the Origin of ARI websockets; ari/v6 sends
	// http://localhost/ whatever the server's address.
	CheckOrigin:  func(*http.Request) bool { return true },
	Subprotocols: []string{"ari"},
}

// serveEvents is GET /ari/events: register the apps, then stream the events
// routed to them until the client goes away.
func (h *Handler) serveEvents(rw *response, r *http.Request, req *request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		rw.httpError(http.StatusUpgradeRequired, "Upgrade Required", "")
		return
	}
	appParam, _ := req.param("app")
	if appParam == "" {
		rw.httpError(http.StatusBadRequest, "Bad Request", "Missing param 'app'")
		return
	}
	var apps []string
	for _, a := range splitList(appParam) {
		if a == "" {
			rw.httpError(http.StatusBadRequest, "Bad Request", "Invalid application provided in param 'app'.")
			return
		}
		if !slices.Contains(apps, a) {
			apps = append(apps, a)
		}
	}
	subAll, _ := req.param("subscribeAll")

	// Register and subscribe before the upgrade, as Asterisk registers the
	// apps before it answers the handshake.
	c := &wsConn{apps: apps, asteriskID: h.b.Info().EntityID,
		queue: make(chan []byte, h.queue), done: make(chan struct{})}
	now := time.Now()
	for _, name := range apps {
		if old := h.reg.register(name, c, astTrue(subAll)); old != nil {
			old.send(encodeReplaced(name, c.asteriskID, now))
		}
	}
	cancel := h.b.Subscribe(func(e Event) { h.route(c, e) })
	defer func() {
		cancel()
		h.reg.unregister(c)
		c.close(false)
	}()

	hdr := http.Header{}
	hdr.Set("Server", rw.server)
	bw := &burstWriter{ResponseWriter: rw.w}
	ws, err := upgrader.Upgrade(bw, r, hdr)
	if err != nil {
		h.log.Debug("ari: websocket upgrade failed", "err", err)
		return
	}
	c.attach(ws)
	h.log.Info("ari: websocket connected", "apps", appParam, "remote", r.RemoteAddr)
	go c.writer(ws, bw.conn)

	// Read (and discard) until the client closes; this also answers pings.
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break
		}
	}
	c.close(false) // waits for an overflow close, so overflowed is settled
	if c.overflowed {
		h.log.Warn("ari: websocket dropped, client too slow", "apps", appParam, "queue", h.queue)
	} else {
		h.log.Info("ari: websocket closed", "apps", appParam)
	}
}

// route delivers e to every app of c that is still served by c and wants it.
// It runs inside the backend's callback: it never blocks and never calls the
// backend.
func (h *Handler) route(c *wsConn, e Event) {
	var targets []string
	h.reg.mu.Lock()
	for _, name := range c.apps {
		if a := h.reg.apps[name]; a != nil && a.conn == c && a.wants(e) {
			targets = append(targets, name)
		}
	}
	h.reg.mu.Unlock()
	for _, name := range targets {
		msg, err := encodeEvent(e, name, c.asteriskID)
		if err != nil {
			h.log.Debug("ari: event not sent", "err", err)
			continue
		}
		if !c.send(msg) {
			return
		}
	}
}
