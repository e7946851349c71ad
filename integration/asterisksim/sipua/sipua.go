// Package sipua is a small SIP user agent for tests: it registers with MD5
// digest (qop=auth), unregisters, and can play the attacker (wrong password,
// unknown account). It writes REGISTER requests byte for byte like the probe
// that captured ../shared/asterisk-transcripts, over UDP or TCP, from a
// chosen local address.
//
// While it reads (Do, Listen, Serve) it also answers what a server sends it:
// OPTIONS with 200, and incoming calls (call.go): an INVITE gets 100 Trying
// and 180 Ringing, then 200 OK with a minimal SDP answer when told to answer
// (Call.Answer) or after Answering.AnswerAfter; ACK, BYE and CANCEL end or
// confirm the dialog as RFC 3261 says, and Call.Hangup sends BYE.
package sipua

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes one phone.
type Config struct {
	Server    string        // registrar host:port, e.g. "127.0.0.1:5060"
	Transport string        // "udp" (default) or "tcp"
	LocalAddr string        // local bind address, e.g. "127.0.0.1:5070"; "" picks one
	User      string        // account (From/To user, digest username)
	Password  string        // digest password
	Domain    string        // From/To host; default the server's host
	UserAgent string        // default "sipprobe/0.1"
	Expires   int           // default 300
	Timeout   time.Duration // per request, default 2 s
	// Answering is what the phone does with incoming INVITEs (SetAnswering
	// changes it later); the zero value rings until Call.Answer.
	Answering Answering
}

// Response is a SIP response as received.
type Response struct {
	Status  int
	Reason  string
	Headers [][2]string
	Raw     []byte
}

// Get returns the first header with that name (case-insensitive).
func (r *Response) Get(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// Exchange is one request and its response, raw.
type Exchange struct {
	Request  []byte
	Response []byte
}

// Phone is a registering user agent bound to one local address.
type Phone struct {
	cfg   Config
	conn  net.Conn
	tcp   *bufio.Reader
	wmu   sync.Mutex // one writer at a time (TCP framing)
	mu    sync.Mutex
	call  string
	tag   string
	cseq  int
	trace []Exchange

	// incoming calls (call.go), under mu
	answering Answering
	calls     map[string]*Call // Call-ID -> call
	incoming  chan *Call
	pending   map[string]chan *Response // "Call-ID CSeq" of our in-dialog requests
}

// ErrTimeout means no response came in time (e.g. the packets were dropped).
var ErrTimeout = errors.New("sipua: no response")

// New binds the phone's socket (and connects, for TCP).
func New(ctx context.Context, cfg Config) (*Phone, error) {
	if cfg.Server == "" || cfg.User == "" {
		return nil, errors.New("sipua: Server and User are required")
	}
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	if cfg.Transport != "udp" && cfg.Transport != "tcp" {
		return nil, fmt.Errorf("sipua: unsupported transport %q", cfg.Transport)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sipprobe/0.1"
	}
	if cfg.Expires == 0 {
		cfg.Expires = 300
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Domain == "" {
		h, _, err := net.SplitHostPort(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("sipua: server address: %w", err)
		}
		cfg.Domain = h
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	if cfg.LocalAddr != "" {
		var err error
		if cfg.Transport == "udp" {
			d.LocalAddr, err = net.ResolveUDPAddr("udp", cfg.LocalAddr)
		} else {
			d.LocalAddr, err = net.ResolveTCPAddr("tcp", cfg.LocalAddr)
		}
		if err != nil {
			return nil, fmt.Errorf("sipua: local address: %w", err)
		}
	}
	conn, err := d.DialContext(ctx, cfg.Transport, cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("sipua: dial %s %s: %w", cfg.Transport, cfg.Server, err)
	}
	p := &Phone{cfg: cfg, conn: conn, answering: cfg.Answering, calls: map[string]*Call{},
		incoming: make(chan *Call, 16), pending: map[string]chan *Response{}}
	if cfg.Transport == "tcp" {
		p.tcp = bufio.NewReader(conn)
	}
	p.NewDialog()
	return p, nil
}

// NewDialog starts a new registration dialog: new Call-ID, From tag and CSeq.
func (p *Phone) NewDialog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ip, _ := splitHost(p.conn.LocalAddr().String())
	p.call = randHex(16) + "@" + ip
	p.tag = randHex(8)
	p.cseq = 0
}

// CallID returns the current dialog's Call-ID.
func (p *Phone) CallID() string { p.mu.Lock(); defer p.mu.Unlock(); return p.call }

// LocalAddr is the phone's bound address.
func (p *Phone) LocalAddr() net.Addr { return p.conn.LocalAddr() }

// ContactURI is the URI the phone registers, e.g. "sip:1001@127.0.0.1:5070".
func (p *Phone) ContactURI() string {
	u := "sip:" + p.cfg.User + "@" + hostPort(p.conn.LocalAddr().String())
	if p.cfg.Transport == "tcp" {
		u += ";transport=tcp"
	}
	return u
}

// Trace returns every request/response pair so far.
func (p *Phone) Trace() []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exchange(nil), p.trace...)
}

// Close releases the socket.
func (p *Phone) Close() error { return p.conn.Close() }

// Register sends REGISTER and answers one 401 challenge; it returns the
// final response (200 on success, 401 for a wrong password or unknown account).
func (p *Phone) Register(ctx context.Context) (*Response, error) {
	return p.register(ctx, p.cfg.Expires)
}

// Unregister sends REGISTER with Expires: 0 in the same dialog.
func (p *Phone) Unregister(ctx context.Context) (*Response, error) { return p.register(ctx, 0) }

func (p *Phone) register(ctx context.Context, expires int) (*Response, error) {
	r, err := p.Do(ctx, p.Request(expires, ""))
	if err != nil || r.Status != 401 {
		return r, err
	}
	ch := r.Get("WWW-Authenticate")
	if ch == "" {
		return r, nil
	}
	auth, err := p.Authorization(ch)
	if err != nil {
		return r, err
	}
	return p.Do(ctx, p.Request(expires, auth))
}

// Request builds a REGISTER of the current dialog with the next CSeq.
func (p *Phone) Request(expires int, authorization string) []byte {
	p.mu.Lock()
	p.cseq++
	cseq, call, tag := p.cseq, p.call, p.tag
	p.mu.Unlock()
	local := hostPort(p.conn.LocalAddr().String())
	ruri := p.requestURI()
	proto := "UDP"
	if p.cfg.Transport == "tcp" {
		proto = "TCP"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport\r\n", proto, local, randHex(12))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", p.cfg.User, bracket(p.cfg.Domain), tag)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", p.cfg.User, bracket(p.cfg.Domain))
	fmt.Fprintf(&b, "Call-ID: %s\r\n", call)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <%s>\r\n", p.ContactURI())
	fmt.Fprintf(&b, "Expires: %d\r\n", expires)
	if authorization != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", authorization)
	}
	fmt.Fprintf(&b, "User-Agent: %s\r\n", p.cfg.UserAgent)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func (p *Phone) requestURI() string {
	u := "sip:" + hostPort(p.cfg.Server)
	if p.cfg.Transport == "tcp" {
		u += ";transport=tcp"
	}
	return u
}

// Authorization answers a WWW-Authenticate challenge to a REGISTER with
// the configured password.
func (p *Phone) Authorization(challenge string) (string, error) {
	return p.authorization("REGISTER", p.requestURI(), challenge)
}

func (p *Phone) authorization(method, uri, challenge string) (string, error) {
	params := parseChallenge(challenge)
	realm, nonce := params["realm"], params["nonce"]
	if nonce == "" {
		return "", fmt.Errorf("sipua: challenge without nonce")
	}
	cnonce := randHex(8)
	nc := "00000001"
	ha1 := md5hex(p.cfg.User + ":" + realm + ":" + p.cfg.Password)
	ha2 := md5hex(method + ":" + uri)
	var resp string
	if strings.Contains(params["qop"], "auth") {
		resp = md5hex(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
		a := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, cnonce="%s", qop=auth, nc=%s`,
			p.cfg.User, realm, nonce, uri, resp, cnonce, nc)
		if o := params["opaque"]; o != "" {
			a += fmt.Sprintf(`, opaque="%s"`, o)
		}
		return a, nil
	}
	resp = md5hex(ha1 + ":" + nonce + ":" + ha2)
	a := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5`, p.cfg.User, realm, nonce, uri, resp)
	if o := params["opaque"]; o != "" {
		a += fmt.Sprintf(`, opaque="%s"`, o)
	}
	return a, nil
}

// Do sends a raw request and waits for its final response (1xx skipped).
func (p *Phone) Do(ctx context.Context, req []byte) (*Response, error) {
	deadline := time.Now().Add(p.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = p.conn.SetDeadline(deadline)
	defer func() { _ = p.conn.SetDeadline(time.Time{}) }()
	if err := p.write(req); err != nil {
		return nil, fmt.Errorf("sipua: send: %w", err)
	}
	wantCSeq := headerOf(req, "CSeq")
	for {
		raw, err := p.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, ErrTimeout
			}
			return nil, fmt.Errorf("sipua: receive: %w", err)
		}
		if p.answerRequest(raw) {
			continue
		}
		r, err := ParseResponse(raw)
		if err != nil {
			continue
		}
		if r.Get("CSeq") != wantCSeq || r.Status < 200 {
			p.deliver(r)
			continue
		}
		p.mu.Lock()
		p.trace = append(p.trace, Exchange{Request: req, Response: raw})
		p.mu.Unlock()
		return r, nil
	}
}

// Listen answers the registrar's OPTIONS (qualify) and calls for d, or
// until ctx ends; a phone that should look unreachable simply does not listen.
func (p *Phone) Listen(ctx context.Context, d time.Duration) error {
	return p.listen(ctx, time.Now().Add(d))
}

// Serve is Listen until ctx ends: a phone that can be called runs it in a
// goroutine. Do (Register, Unregister) must not run at the same time.
func (p *Phone) Serve(ctx context.Context) error { return p.listen(ctx, time.Time{}) }

func (p *Phone) listen(ctx context.Context, end time.Time) error {
	for ctx.Err() == nil && (end.IsZero() || time.Now().Before(end)) {
		deadline := time.Now().Add(100 * time.Millisecond)
		if !end.IsZero() && end.Before(deadline) {
			deadline = end
		}
		_ = p.conn.SetReadDeadline(deadline)
		raw, err := p.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = p.conn.SetReadDeadline(time.Time{})
			return fmt.Errorf("sipua: listen: %w", err)
		}
		if !p.answerRequest(raw) {
			if r, err := ParseResponse(raw); err == nil {
				p.deliver(r)
			}
		}
	}
	_ = p.conn.SetReadDeadline(time.Time{})
	return nil
}

// answerRequest answers an OPTIONS with 200 OK and hands call requests to
// call.go; it reports whether raw was a request (which Do must not take for
// its response).
func (p *Phone) answerRequest(raw []byte) bool {
	if strings.HasPrefix(string(raw), "SIP/2.0 ") {
		return false
	}
	method, _, _ := strings.Cut(string(raw), " ")
	switch method {
	case "INVITE", "ACK", "BYE", "CANCEL":
		p.callRequest(method, raw)
		return true
	case "OPTIONS":
	default:
		return true
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSuffix(l, "\r")
		k, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(l + "\r\n")
		case "to":
			b.WriteString(l + ";tag=" + randHex(8) + "\r\n")
		}
	}
	b.WriteString("Allow: OPTIONS, INVITE, ACK, BYE, CANCEL\r\nContent-Length: 0\r\n\r\n")
	_ = p.write([]byte(b.String()))
	return true
}

// write sends one whole message (calls write from timers while another
// goroutine may be sending).
func (p *Phone) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.conn.Write(b)
	return err
}

func (p *Phone) read() ([]byte, error) {
	if p.tcp == nil {
		buf := make([]byte, 65536)
		n, err := p.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	var head []byte
	for {
		line, err := p.tcp.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if len(head) == 0 && (line == "\r\n" || line == "\n") {
			continue // keep-alive
		}
		head = append(head, line...)
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	n, _ := strconv.Atoi(strings.TrimSpace(headerOf(head, "Content-Length")))
	body := make([]byte, n)
	if _, err := io.ReadFull(p.tcp, body); err != nil {
		return nil, err
	}
	return append(head, body...), nil
}

// ParseResponse parses a SIP response.
func ParseResponse(raw []byte) (*Response, error) {
	text := string(raw)
	head, _, _ := strings.Cut(text, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SIP/2.0 ") {
		return nil, fmt.Errorf("sipua: not a response: %.40q", lines[0])
	}
	code, reason, _ := strings.Cut(lines[0][len("SIP/2.0 "):], " ")
	n, err := strconv.Atoi(code)
	if err != nil {
		return nil, fmt.Errorf("sipua: bad status line %.40q", lines[0])
	}
	r := &Response{Status: n, Reason: reason, Raw: raw}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			r.Headers = append(r.Headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return r, nil
}

func headerOf(msg []byte, name string) string {
	for _, l := range strings.Split(string(msg), "\n") {
		k, v, ok := strings.Cut(strings.TrimSuffix(l, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func parseChallenge(h string) map[string]string {
	out := map[string]string{}
	_, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	for _, p := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			out[strings.ToLower(k)] = strings.Trim(v, `"`)
		}
	}
	return out
}

func splitHost(hp string) (string, string) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, ""
	}
	return h, p
}

func bracket(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

func hostPort(hp string) string {
	h, p := splitHost(hp)
	if p == "" {
		return bracket(h)
	}
	return bracket(h) + ":" + p
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
