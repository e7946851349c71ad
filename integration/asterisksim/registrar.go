package asterisksim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const nonceLifetime = 32 * time.Second // res_pjsip nonce_lifetime

// sipServer is the PJSIP-like registrar on UDP and TCP.
type sipServer struct {
	c      *core
	udp    *net.UDPConn
	tcp    net.Listener
	conns  *connSet
	secret string // nonce key, new at every start like Asterisk's entity secret
	wg     sync.WaitGroup
}

func (s *sipServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, sipMaxMessage+1)
	local := addrForm("UDP", s.udp.LocalAddr())
	for {
		n, src, err := s.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.handle(pkt, src, "UDP", local, func(b []byte) { _, _ = s.udp.WriteToUDP(b, src) })
	}
}

func (s *sipServer) serveTCP(ctx context.Context) {
	defer s.wg.Done()
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serveTCPConn(ctx, conn)
		}()
	}
}

// serveTCPConn frames a TCP stream by Content-Length; CRLF keep-alives are
// answered with CRLF (RFC 5626 pong).
func (s *sipServer) serveTCPConn(ctx context.Context, conn net.Conn) {
	r := bufio.NewReaderSize(conn, 8192)
	local := addrForm("TCP", conn.LocalAddr())
	var wmu sync.Mutex
	send := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		// bounded: qualify sends under the core lock
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(b)
	}
	for ctx.Err() == nil {
		msg, ping, err := readSIPStream(r)
		if err != nil {
			return
		}
		if ping {
			send([]byte("\r\n"))
			continue
		}
		s.handle(msg, conn.RemoteAddr(), "TCP", local, send)
	}
}

// readSIPStream reads one message from a stream. A bare CRLFCRLF is a ping.
func readSIPStream(r *bufio.Reader) (msg []byte, ping bool, err error) {
	var head []byte
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, false, fmt.Errorf("%w: header line too long", errSIPSyntax)
		}
		if err != nil {
			return nil, false, err
		}
		if len(head) == 0 && (string(line) == "\r\n" || string(line) == "\n") {
			// keep-alive: CRLFCRLF gets a CRLF back; a lone CRLF is skipped
			if b, _ := r.Peek(2); string(b) == "\r\n" {
				_, _ = r.Discard(2)
				return nil, true, nil
			}
			continue
		}
		head = append(head, line...)
		if len(head) > sipMaxMessage {
			return nil, false, fmt.Errorf("%w: headers too long", errSIPSyntax)
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			break
		}
	}
	n := 0
	for _, l := range splitLines(string(head)) {
		name, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(canonicalSIPName(strings.TrimSpace(name)), "Content-Length") {
			n, err = strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > sipMaxMessage {
				return nil, false, fmt.Errorf("%w: bad Content-Length", errSIPSyntax)
			}
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, false, err
	}
	return append(head, body...), false, nil
}

// request holds what a handler needs about one received request.
type request struct {
	m         *sipMsg
	src       net.Addr
	srcIP     string
	srcPort   int
	transport string
	local     string
	localHost string // our IP and port as "host:port" (for qualify's Via/Contact)
	remote    string
	callID    string
	send      func([]byte)
}

func (s *sipServer) handle(pkt []byte, src net.Addr, transport, local string, send func([]byte)) {
	m, err := parseSIP(pkt)
	ip, port := hostPort(src)
	if m != nil && !m.request && err == nil {
		if !s.c.callResponse(m) {
			s.c.qualifyResponse(m)
		}
		return
	}
	if m == nil || !m.request {
		if err != nil {
			s.c.log.Debug("asterisksim: dropped unparsable SIP", "source", src.String(), "err", err)
		}
		return // responses and garbage are dropped, as pjsip does
	}
	req := &request{m: m, src: src, srcIP: ip, srcPort: port, transport: transport, local: local,
		localHost: localHostPort(local), remote: addrForm(transport, src), callID: m.get("Call-ID"), send: send}
	if err != nil || m.get("Via") == "" || m.get("From") == "" || m.get("To") == "" || req.callID == "" || m.get("CSeq") == "" {
		s.badRequest(req)
		return
	}
	if _, err := parseVia(m.all("Via")[0]); err != nil {
		return // no usable Via: nowhere to answer
	}
	if strings.EqualFold(m.method, "ACK") || s.callBye(req) {
		return
	}
	s.serveRequest(req)
}

func hostPort(a net.Addr) (string, int) {
	switch v := a.(type) {
	case *net.UDPAddr:
		return ipString(v.IP), v.Port
	case *net.TCPAddr:
		return ipString(v.IP), v.Port
	}
	return "", 0
}

func ipString(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.String()
}

func (s *sipServer) badRequest(req *request) {
	vias := req.m.all("Via")
	if len(vias) == 0 || req.m.get("CSeq") == "" || req.callID == "" {
		return
	}
	if _, err := parseVia(vias[0]); err != nil {
		return
	}
	req.send(s.response(req, 400, "Bad Request", nil))
}

// response builds a response in pjsip's header order.
func (s *sipServer) response(req *request, code int, reason string, extra []sipHeader) []byte {
	m := req.m
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	branch := ""
	for i, v := range m.all("Via") {
		pv, err := parseVia(v)
		if err != nil {
			continue
		}
		if i == 0 {
			branch, _ = pv.param("branch")
			b.WriteString("Via: " + pv.render(req.srcIP, req.srcPort) + "\r\n")
			continue
		}
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("Call-ID: " + req.callID + "\r\n")
	b.WriteString("From: " + m.get("From") + "\r\n")
	to := m.get("To")
	if na, err := parseNameAddr(to); err == nil {
		if _, has := na.param("tag"); !has && code > 100 {
			tag := branch
			if tag == "" {
				tag = randHex(32)
			}
			to += ";tag=" + tag
		}
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("CSeq: " + m.get("CSeq") + "\r\n")
	for _, h := range extra {
		b.WriteString(h.name + ": " + h.value + "\r\n")
	}
	b.WriteString("Server: Asterisk PBX " + s.c.cfg.Version + "\r\n")
	b.WriteString("Content-Length:  0\r\n\r\n")
	return []byte(b.String())
}

// nonce is res_pjsip's "<timestamp>/<md5>" bound to the source address.
func (s *sipServer) nonce(ts int64, srcIP string) string {
	return fmt.Sprintf("%d/%s", ts, md5hex(fmt.Sprintf("%d:%s:%s:%s", ts, srcIP, s.c.cfg.Realm, s.secret)))
}

// checkNonce reports whether n is ours for this source, and whether it is stale.
func (s *sipServer) checkNonce(n, srcIP string) (valid, stale bool) {
	tsText, _, ok := strings.Cut(n, "/")
	if !ok {
		return false, false
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || s.nonce(ts, srcIP) != n {
		return false, false
	}
	return true, s.c.now().Sub(time.Unix(ts, 0)) > nonceLifetime
}

func (s *sipServer) challenge(req *request, code int, stale bool) []byte {
	st := ""
	if stale {
		st = ",stale=true"
	}
	h := fmt.Sprintf(`Digest realm="%s",nonce="%s",opaque="%s"%s,algorithm=MD5,qop="auth"`,
		s.c.cfg.Realm, s.nonce(s.c.now().Unix(), req.srcIP), randHex(16), st)
	return s.response(req, code, "Unauthorized", []sipHeader{{"WWW-Authenticate", h}})
}

func (s *sipServer) secBase(req *request, name, severity, account string) *secEvent {
	return &secEvent{name: name, severity: severity, service: "PJSIP", version: "1", hasAcct: true,
		accountID: account, sessionID: req.callID, local: req.local, remote: req.remote}
}

// serveRequest runs the distributor: identify the endpoint, authenticate,
// then hand REGISTER to the registrar.
func (s *sipServer) serveRequest(req *request) {
	m := req.m
	from, err := parseNameAddr(m.get("From"))
	if err != nil {
		s.badRequest(req)
		return
	}
	user := uriUser(from.uri)
	password, known := s.c.cfg.Endpoints[user]
	auth, hasAuth := parseAuth(m.get("Authorization"))
	if hasAuth && auth["realm"] != s.c.cfg.Realm {
		hasAuth = false
	}
	if !known {
		// The artificial endpoint: a normal-looking challenge that never succeeds.
		s.c.emitSec(s.secBase(req, "InvalidAccountID", "Error", user))
		s.failNotice(req, from, "No matching endpoint found")
		if !hasAuth {
			ev := s.secBase(req, "ChallengeSent", "Informational", "<unknown>")
			ev.extra = []kv{{"Challenge", ""}}
			s.c.emitSec(ev)
		} else {
			ev := s.secBase(req, "ChallengeResponseFailed", "Error", "<unknown>")
			ev.extra = []kv{{"Challenge", auth["nonce"]}, {"Response", auth["response"]}, {"ExpectedResponse", ""}}
			s.c.emitSec(ev)
			s.failNotice(req, from, "Failed to authenticate")
		}
		req.send(s.challenge(req, 401, false))
		return
	}
	if !hasAuth {
		ev := s.secBase(req, "ChallengeSent", "Informational", user)
		ev.extra = []kv{{"Challenge", ""}}
		s.c.emitSec(ev)
		req.send(s.challenge(req, 401, false))
		return
	}
	valid, stale := s.checkNonce(auth["nonce"], req.srcIP)
	ok := valid && auth["username"] == user && digestOK(auth, m.method, user, s.c.cfg.Realm, password)
	if ok && stale {
		ev := s.secBase(req, "ChallengeSent", "Informational", user)
		ev.extra = []kv{{"Challenge", ""}}
		s.c.emitSec(ev)
		req.send(s.challenge(req, 401, true))
		return
	}
	if !ok {
		ev := s.secBase(req, "ChallengeResponseFailed", "Error", user)
		ev.extra = []kv{{"Challenge", auth["nonce"]}, {"Response", auth["response"]}, {"ExpectedResponse", ""}}
		s.c.emitSec(ev)
		s.failNotice(req, from, "Failed to authenticate")
		req.send(s.challenge(req, 401, false))
		return
	}
	ev := s.secBase(req, "SuccessfulAuth", "Informational", user)
	ev.extra = []kv{{"UsingPassword", "1"}}
	s.c.emitSec(ev)
	switch strings.ToUpper(m.method) {
	case "REGISTER":
		s.register(req, user)
	case "OPTIONS":
		req.send(s.response(req, 200, "OK", []sipHeader{{"Allow", "OPTIONS, REGISTER"}, {"Accept", "application/sdp"}}))
	default:
		req.send(s.response(req, 501, "Not Implemented", nil))
	}
}

// failNotice logs pjsip_distributor.c's NOTICE for a failed request.
func (s *sipServer) failNotice(req *request, from nameAddr, reason string) {
	s.c.log.Info("asterisksim: SIP request failed", "method", req.m.method, "source", req.remote, "reason", reason)
	s.c.emitNotice(pjsipTID, "res_pjsip/pjsip_distributor.c", fmt.Sprintf("Request '%s' from '<%s>' failed for '%s' (callid: %s) - %s",
		req.m.method, from.uri, joinHostPort(req.srcIP, itoa(req.srcPort)), req.callID, reason))
}

// digestOK verifies an RFC 2617 MD5 digest (qop=auth or none).
func digestOK(a map[string]string, method, user, realm, password string) bool {
	if alg := a["algorithm"]; alg != "" && !strings.EqualFold(alg, "MD5") {
		return false
	}
	ha1 := md5hex(user + ":" + realm + ":" + password)
	ha2 := md5hex(method + ":" + a["uri"])
	var want string
	switch a["qop"] {
	case "auth":
		want = md5hex(ha1 + ":" + a["nonce"] + ":" + a["nc"] + ":" + a["cnonce"] + ":auth:" + ha2)
	case "":
		want = md5hex(ha1 + ":" + a["nonce"] + ":" + ha2)
	default:
		return false
	}
	return strings.EqualFold(want, a["response"])
}

// register is res_pjsip_registrar for an authenticated REGISTER.
func (s *sipServer) register(req *request, endpoint string) {
	m := req.m
	to, err := parseNameAddr(m.get("To"))
	if err != nil {
		s.badRequest(req)
		return
	}
	aor := uriUser(to.uri)
	if _, ok := s.c.cfg.Endpoints[aor]; !ok {
		req.send(s.response(req, 404, "Not Found", nil))
		return
	}
	if aor != endpoint {
		req.send(s.response(req, 403, "Forbidden", nil))
		return
	}
	hdrExpires := -1
	if e := m.get("Expires"); e != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(e)); err == nil && n >= 0 {
			hdrExpires = n
		}
	}
	if resp := s.applyContacts(req, aor, hdrExpires); resp != nil {
		req.send(resp)
		return
	}
	s.c.mu.Lock()
	now := s.c.now()
	extra := []sipHeader{{"Date", now.UTC().Format(http.TimeFormat)}}
	if ct := s.c.contacts[aor]; ct != nil {
		// Asterisk counts down from the stored expiration time, so a fresh
		// 300 s registration already shows 299.
		left := int((ct.Expires.Sub(now) - time.Millisecond) / time.Second)
		extra = append(extra, sipHeader{"Contact", "<" + ct.URI + ">;expires=" + itoa(max(left, 0))})
	}
	s.c.mu.Unlock()
	exp := hdrExpires
	if exp < 0 {
		exp = s.c.cfg.DefaultExpires
	}
	exp = min(exp, s.c.cfg.MaxExpires)
	extra = append(extra, sipHeader{"Expires", itoa(exp)})
	req.send(s.response(req, 200, "OK", extra))
}

// applyContacts updates the AOR from the request's Contact headers; a
// non-nil result is the error response to send instead of 200.
func (s *sipServer) applyContacts(req *request, aor string, hdrExpires int) []byte {
	m := req.m
	cfg := s.c.cfg
	contacts := m.all("Contact")
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	now := s.c.now()
	if len(contacts) == 1 && contacts[0] == "*" {
		if hdrExpires != 0 {
			return s.response(req, 400, "Bad Request", nil)
		}
		s.c.removeContactLocked(aor)
		return nil
	}
	for _, cv := range contacts {
		na, err := parseNameAddr(cv)
		if err != nil || na.uri == "" || cv == "*" {
			return s.response(req, 400, "Bad Request", nil)
		}
		exp := hdrExpires
		if e, ok := na.param("expires"); ok {
			if n, err := strconv.Atoi(e); err == nil && n >= 0 {
				exp = n
			}
		}
		if exp < 0 {
			exp = cfg.DefaultExpires
		}
		exp = min(exp, cfg.MaxExpires)
		existing := s.c.contacts[aor]
		if exp == 0 {
			if existing != nil && existing.URI == na.uri {
				s.c.removeContactLocked(aor)
			}
			continue
		}
		if exp < cfg.MinExpires {
			return s.response(req, 423, "Interval Too Brief", []sipHeader{{"Min-Expires", itoa(cfg.MinExpires)}})
		}
		v, _ := parseVia(m.all("Via")[0])
		ct := &contact{AOR: aor, URI: na.uri, CallID: req.callID, ViaAddr: v.host, ViaPort: v.port,
			UserAgent: m.get("User-Agent"), Source: req.remote, Expires: now.Add(time.Duration(exp) * time.Second),
			send: req.send, localHost: req.localHost}
		if ct.ViaPort == "" {
			ct.ViaPort = "5060"
		}
		switch {
		case existing != nil && existing.URI == na.uri:
			// a refresh raises no event and keeps the qualify state
			ct.status, ct.nextProbe, ct.probeID, ct.probeSent = existing.status, existing.nextProbe, existing.probeID, existing.probeSent
			s.c.contacts[aor] = ct
		case existing != nil && !cfg.RemoveExisting:
			s.c.log.Info("asterisksim: registration would exceed max contacts", "aor", aor, "max_contacts", 1)
			return s.response(req, 403, "Forbidden", nil)
		case existing != nil:
			s.c.removeContactLocked(aor)
			s.c.addContactLocked(ct)
		default:
			s.c.addContactLocked(ct)
		}
	}
	return nil
}

// localHostPort turns "IPV4/UDP/127.0.0.1/5060" into "127.0.0.1:5060".
func localHostPort(form string) string {
	parts := strings.Split(form, "/")
	if len(parts) != 4 {
		return ""
	}
	return joinHostPort(parts[2], parts[3])
}
