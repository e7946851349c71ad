package sipua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Incoming calls: the phone is the UAS of an INVITE dialog (RFC 3261 §12,
// §13.3, §15). No proxies (Record-Route is not kept), no media: the SDP
// answer names a port where nothing listens, enough for a server to count
// the call as answered.

// Answering is what the phone does with an incoming INVITE.
type Answering struct {
	// Reject, when set, is the final status (486 Busy Here, 603 Decline)
	// sent after 100 Trying instead of ringing.
	Reject int
	// NoRinging answers with 200 OK right after 100 Trying, without 180:
	// the device goes from idle to in use without ringing.
	NoRinging bool
	// AnswerAfter answers this long after 180; 0 rings until Call.Answer.
	AnswerAfter time.Duration
}

// SetAnswering changes what the phone does with the next INVITEs.
func (p *Phone) SetAnswering(a Answering) { p.mu.Lock(); p.answering = a; p.mu.Unlock() }

// Incoming delivers each new incoming call (buffered; a call nobody takes
// still rings, and Calls lists it).
func (p *Phone) Incoming() <-chan *Call { return p.incoming }

// Calls lists the calls that have not ended.
func (p *Phone) Calls() []*Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Call
	for _, c := range p.calls {
		if c.state != CallEnded {
			out = append(out, c)
		}
	}
	return out
}

// CallState is where an incoming call is.
type CallState string

// The states of an incoming call.
const (
	CallRinging CallState = "ringing" // INVITE received, no final response yet
	CallUp      CallState = "up"      // 200 OK sent (ACK may still be on its way)
	CallEnded   CallState = "ended"
)

// Call is one incoming INVITE dialog.
type Call struct {
	p        *Phone
	callID   string
	vias     []string // of the INVITE, in order, for its responses
	from     string   // the INVITE's From (remote URI and tag)
	to       string   // the INVITE's To without tag
	localTag string
	cseq     string // of the INVITE: "<n> INVITE"
	target   string // the INVITE's Contact URI: where our requests go
	offer    string // the INVITE's SDP

	// under p.mu
	state     CallState
	final     []byte // last final response to the INVITE, resent on retransmissions
	acked     bool
	localCSeq int
	done      chan struct{}
}

// CallID is the dialog's Call-ID.
func (c *Call) CallID() string { return c.callID }

// From is the caller as the INVITE's From header names it.
func (c *Call) From() string { return c.from }

// State is the call's current state.
func (c *Call) State() CallState { c.p.mu.Lock(); defer c.p.mu.Unlock(); return c.state }

// Done is closed when the call ends (BYE, CANCEL, rejection, Hangup).
func (c *Call) Done() <-chan struct{} { return c.done }

// Answer sends 200 OK with an SDP answer to a ringing call; the 200 is
// resent over UDP until the ACK comes (RFC 3261 §13.3.1.4).
func (c *Call) Answer() error {
	p := c.p
	p.mu.Lock()
	if c.state != CallRinging {
		st := c.state
		p.mu.Unlock()
		return fmt.Errorf("sipua: answer a call that is %s", st)
	}
	c.state = CallUp
	ok := c.response(200, "OK", true)
	c.final = ok
	p.mu.Unlock()
	if err := p.write(ok); err != nil {
		return fmt.Errorf("sipua: send 200 OK: %w", err)
	}
	if p.cfg.Transport == "udp" {
		go c.retransmit(ok)
	}
	return nil
}

func (c *Call) retransmit(ok []byte) {
	wait, total := 500*time.Millisecond, time.Duration(0)
	for total < 32*time.Second {
		select {
		case <-c.done:
			return
		case <-time.After(wait):
		}
		total += wait
		wait = min(2*wait, 4*time.Second)
		c.p.mu.Lock()
		acked := c.acked
		c.p.mu.Unlock()
		if acked {
			return
		}
		_ = c.p.write(ok)
	}
}

// Hangup ends the call from the phone's side: BYE when it is up (one 401
// or 407 challenge is answered with the phone's credentials), 603 Decline
// while it rings. The BYE's response is read by Serve or Listen, which must
// be running.
func (c *Call) Hangup(ctx context.Context) error {
	p := c.p
	p.mu.Lock()
	switch c.state {
	case CallEnded:
		p.mu.Unlock()
		return nil
	case CallRinging:
		c.endLocked()
		c.final = c.response(603, "Decline", false)
		b := c.final
		p.mu.Unlock()
		return p.write(b)
	}
	c.endLocked()
	p.mu.Unlock()
	auth := ""
	for attempt := 0; ; attempt++ {
		r, err := c.request(ctx, "BYE", auth)
		if err != nil {
			return err
		}
		ch := r.Get("WWW-Authenticate")
		if r.Status == 407 {
			ch = r.Get("Proxy-Authenticate")
		}
		if (r.Status == 401 || r.Status == 407) && ch != "" && attempt == 0 {
			a, err := p.authorization("BYE", c.target, ch)
			if err != nil {
				return err
			}
			name := "Authorization"
			if r.Status == 407 {
				name = "Proxy-Authorization"
			}
			auth = name + ": " + a
			continue
		}
		if r.Status >= 300 {
			return fmt.Errorf("sipua: BYE: %d %s", r.Status, r.Reason)
		}
		return nil
	}
}

// request sends an in-dialog request and waits for its final response.
func (c *Call) request(ctx context.Context, method, extraHeader string) (*Response, error) {
	p := c.p
	p.mu.Lock()
	c.localCSeq++
	cseq := fmt.Sprintf("%d %s", c.localCSeq, method)
	key := c.callID + " " + cseq
	ch := make(chan *Response, 1)
	p.pending[key] = ch
	p.mu.Unlock()
	defer func() { p.mu.Lock(); delete(p.pending, key); p.mu.Unlock() }()

	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, c.target)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport\r\n", strings.ToUpper(p.cfg.Transport), hostPort(p.conn.LocalAddr().String()), randHex(12))
	b.WriteString("Max-Forwards: 70\r\n")
	// We are the callee: our From is the INVITE's To with our tag.
	fmt.Fprintf(&b, "From: %s;tag=%s\r\n", c.to, c.localTag)
	fmt.Fprintf(&b, "To: %s\r\n", c.from)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", c.callID)
	fmt.Fprintf(&b, "CSeq: %s\r\n", cseq)
	if extraHeader != "" {
		b.WriteString(extraHeader + "\r\n")
	}
	fmt.Fprintf(&b, "User-Agent: %s\r\n", p.cfg.UserAgent)
	b.WriteString("Content-Length: 0\r\n\r\n")
	req := []byte(b.String())
	timeout := time.NewTimer(p.cfg.Timeout)
	defer timeout.Stop()
	resend := time.NewTicker(500 * time.Millisecond) // Timer E, without its back-off
	defer resend.Stop()
	if err := p.write(req); err != nil {
		return nil, fmt.Errorf("sipua: send %s: %w", method, err)
	}
	for {
		select {
		case r := <-ch:
			return r, nil
		case <-resend.C:
			if p.cfg.Transport == "udp" {
				_ = p.write(req)
			}
		case <-timeout.C:
			return nil, ErrTimeout
		case <-ctx.Done():
			return nil, fmt.Errorf("sipua: %s: %w", method, ctx.Err())
		}
	}
}

// deliver hands a final response to the in-dialog request waiting for it.
func (p *Phone) deliver(r *Response) {
	if r.Status < 200 {
		return
	}
	p.mu.Lock()
	ch := p.pending[r.Get("Call-ID")+" "+r.Get("CSeq")]
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default:
		}
	}
}

// endLocked marks the call ended; p.mu held.
func (c *Call) endLocked() {
	if c.state != CallEnded {
		c.state = CallEnded
		close(c.done)
	}
}

// response builds a response to the INVITE (p.mu held or the fields read
// are immutable): Vias, From, Call-ID and CSeq copied, our tag on To.
func (c *Call) response(code int, reason string, withSDP bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range c.vias {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + c.from + "\r\n")
	if code == 100 {
		b.WriteString("To: " + c.to + "\r\n") // no dialog yet
	} else {
		b.WriteString("To: " + c.to + ";tag=" + c.localTag + "\r\n")
	}
	b.WriteString("Call-ID: " + c.callID + "\r\n")
	b.WriteString("CSeq: " + c.cseq + "\r\n")
	if code > 100 && code < 300 {
		fmt.Fprintf(&b, "Contact: <%s>\r\n", c.p.ContactURI())
		b.WriteString("Allow: OPTIONS, INVITE, ACK, BYE, CANCEL\r\n")
	}
	fmt.Fprintf(&b, "User-Agent: %s\r\n", c.p.cfg.UserAgent)
	body := ""
	if withSDP {
		body = c.p.sdp(c.offer)
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return []byte(b.String())
}

// sdp answers offer with its first audio format (PCMU when there is no
// offer), on a port where nothing listens: no media flows.
func (p *Phone) sdp(offer string) string {
	pt, rtpmap := "0", "a=rtpmap:0 PCMU/8000"
	for _, l := range strings.Split(offer, "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "m=audio "); ok {
			if f := strings.Fields(rest); len(f) >= 3 {
				pt, rtpmap = f[2], ""
			}
		}
	}
	if rtpmap == "" {
		for _, l := range strings.Split(offer, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "a=rtpmap:"+pt+" ") {
				rtpmap = l
			}
		}
	}
	host, port := splitHost(p.conn.LocalAddr().String())
	n, _ := strconv.Atoi(port)
	family := "IP4"
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		family = "IP6"
	}
	id := strconv.FormatInt(time.Now().Unix(), 10)
	var b strings.Builder
	b.WriteString("v=0\r\n")
	fmt.Fprintf(&b, "o=- %s %s IN %s %s\r\n", id, id, family, host)
	b.WriteString("s=sipua\r\n")
	fmt.Fprintf(&b, "c=IN %s %s\r\n", family, host)
	b.WriteString("t=0 0\r\n")
	fmt.Fprintf(&b, "m=audio %d RTP/AVP %s\r\n", (n+2)&^1, pt)
	if rtpmap != "" {
		b.WriteString(rtpmap + "\r\n")
	}
	b.WriteString("a=sendrecv\r\n")
	return b.String()
}

// callRequest handles INVITE, ACK, BYE and CANCEL.
func (p *Phone) callRequest(method string, raw []byte) {
	m, err := parseRequest(raw)
	if err != nil {
		return
	}
	callID := m.get("Call-ID")
	p.mu.Lock()
	c := p.calls[callID]
	p.mu.Unlock()
	switch method {
	case "INVITE":
		if c == nil {
			if tagOf(m.get("To")) != "" {
				_ = p.write(simpleResponse(m, 481, "Call/Transaction Does Not Exist", ""))
				return
			}
			p.newCall(m)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case m.get("CSeq") == c.cseq && c.final != nil: // retransmission
			_ = p.write(c.final)
		case m.get("CSeq") == c.cseq: // retransmission while ringing
			_ = p.write(c.response(180, "Ringing", false))
		case c.state == CallUp: // re-INVITE (session refresh): same answer
			_ = p.write(simpleResponse(m, 200, "OK", c.p.sdp(m.body)))
		default:
			_ = p.write(simpleResponse(m, 481, "Call/Transaction Does Not Exist", ""))
		}
	case "ACK":
		if c != nil {
			p.mu.Lock()
			c.acked = true
			p.mu.Unlock()
		}
	case "BYE":
		if c == nil {
			_ = p.write(simpleResponse(m, 481, "Call/Transaction Does Not Exist", ""))
			return
		}
		p.mu.Lock()
		c.endLocked()
		p.mu.Unlock()
		_ = p.write(simpleResponse(m, 200, "OK", ""))
	case "CANCEL":
		if c == nil {
			_ = p.write(simpleResponse(m, 481, "Call/Transaction Does Not Exist", ""))
			return
		}
		p.mu.Lock()
		ringing := c.state == CallRinging
		if ringing {
			c.endLocked()
			c.final = c.response(487, "Request Terminated", false)
		}
		final := c.final
		p.mu.Unlock()
		// 200 for the CANCEL (its own transaction), then 487 for the INVITE.
		_ = p.write(simpleResponse(m, 200, "OK", ""))
		if ringing {
			_ = p.write(final)
		}
	}
}

func (p *Phone) newCall(m *request) {
	target := ""
	if na := m.get("Contact"); na != "" {
		target = uriOf(na)
	}
	c := &Call{p: p, callID: m.get("Call-ID"), vias: m.all("Via"), from: m.get("From"), to: m.get("To"),
		localTag: randHex(10), cseq: m.get("CSeq"), target: target, offer: m.body,
		state: CallRinging, done: make(chan struct{}), localCSeq: 1}
	if c.target == "" {
		c.target = uriOf(c.from)
	}
	p.mu.Lock()
	p.calls[c.callID] = c
	a := p.answering
	p.mu.Unlock()
	_ = p.write(c.response(100, "Trying", false))
	switch {
	case a.Reject >= 300:
		p.mu.Lock()
		c.endLocked()
		c.final = c.response(a.Reject, reasonPhrase(a.Reject), false)
		final := c.final
		p.mu.Unlock()
		_ = p.write(final)
	case a.NoRinging:
		_ = c.Answer()
	default:
		_ = p.write(c.response(180, "Ringing", false))
		if a.AnswerAfter > 0 {
			time.AfterFunc(a.AnswerAfter, func() { _ = c.Answer() })
		}
	}
	select {
	case p.incoming <- c:
	default:
	}
}

func reasonPhrase(code int) string {
	switch code {
	case 486:
		return "Busy Here"
	case 480:
		return "Temporarily Unavailable"
	case 603:
		return "Decline"
	case 600:
		return "Busy Everywhere"
	}
	return "Rejected"
}

// request is a parsed incoming request.
type request struct {
	method  string
	headers [][2]string
	body    string
}

var compactNames = map[string]string{"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length", "c": "Content-Type"}

func parseRequest(raw []byte) (*request, error) {
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		return nil, errors.New("sipua: request without end of headers")
	}
	lines := strings.Split(head, "\r\n")
	method, _, _ := strings.Cut(lines[0], " ")
	r := &request{method: method, body: body}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if full, ok := compactNames[strings.ToLower(k)]; ok {
			k = full
		}
		r.headers = append(r.headers, [2]string{k, strings.TrimSpace(v)})
	}
	if r.get("Call-ID") == "" || r.get("CSeq") == "" || len(r.all("Via")) == 0 {
		return nil, errors.New("sipua: request lacks Call-ID, CSeq or Via")
	}
	if n, err := strconv.Atoi(r.get("Content-Length")); err == nil && n >= 0 && n <= len(r.body) {
		r.body = r.body[:n]
	}
	return r, nil
}

func (r *request) get(name string) string {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// all returns every value of a header in order (comma-joined Vias split).
func (r *request) all(name string) []string {
	var out []string
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			for _, v := range strings.Split(h[1], ",") {
				out = append(out, strings.TrimSpace(v))
			}
		}
	}
	return out
}

// simpleResponse answers a request of its own transaction: Vias, From, To
// (tag kept or added), Call-ID and CSeq copied.
func simpleResponse(m *request, code int, reason, sdp string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range m.all("Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + m.get("From") + "\r\n")
	to := m.get("To")
	if tagOf(to) == "" {
		to += ";tag=" + randHex(10)
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + m.get("Call-ID") + "\r\n")
	b.WriteString("CSeq: " + m.get("CSeq") + "\r\n")
	if sdp != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(sdp), sdp)
	return []byte(b.String())
}

// tagOf returns the tag parameter of a From/To value.
func tagOf(v string) string {
	if i := strings.LastIndex(v, ">"); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range strings.Split(v, ";") {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "tag") {
			return val
		}
	}
	return ""
}

// uriOf returns the URI of a name-addr or addr-spec value.
func uriOf(v string) string {
	if i := strings.Index(v, "<"); i >= 0 {
		if j := strings.Index(v[i:], ">"); j > 0 {
			return v[i+1 : i+j]
		}
	}
	u, _, _ := strings.Cut(strings.TrimSpace(v), ";")
	return u
}
