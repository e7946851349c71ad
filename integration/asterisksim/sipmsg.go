package asterisksim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sipMsg is a parsed SIP message, headers kept in order.
type sipMsg struct {
	request bool
	method  string
	ruri    string
	status  int
	reason  string
	headers []sipHeader
	body    []byte
}

type sipHeader struct{ name, value string }

// compact header forms (RFC 3261 §7.3.3).
var sipCompact = map[string]string{
	"i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
	"c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
}

func canonicalSIPName(n string) string {
	if full, ok := sipCompact[strings.ToLower(n)]; ok {
		return full
	}
	return n
}

const sipMaxMessage = 65535

var errSIPSyntax = errors.New("asterisksim: SIP syntax error")

// parseSIP parses one whole message (UDP datagram or a framed TCP message).
func parseSIP(b []byte) (*sipMsg, error) {
	if len(b) > sipMaxMessage {
		return nil, fmt.Errorf("%w: message of %d bytes", errSIPSyntax, len(b))
	}
	head, body, found := cutHeaderEnd(b)
	if !found {
		return nil, fmt.Errorf("%w: no end of headers", errSIPSyntax)
	}
	lines := splitLines(head)
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: empty message", errSIPSyntax)
	}
	m := &sipMsg{}
	if err := m.parseStartLine(lines[0]); err != nil {
		return nil, err
	}
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(m.headers) > 0 { // folded line
			m.headers[len(m.headers)-1].value += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return m, fmt.Errorf("%w: bad header line %.40q", errSIPSyntax, l)
		}
		m.headers = append(m.headers, sipHeader{canonicalSIPName(name), strings.TrimSpace(value)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 {
			return m, fmt.Errorf("%w: bad Content-Length %.20q", errSIPSyntax, cl)
		}
		if n > len(body) {
			return m, fmt.Errorf("%w: body shorter than Content-Length", errSIPSyntax)
		}
		body = body[:n]
	}
	m.body = body
	return m, nil
}

func (m *sipMsg) parseStartLine(l string) error {
	if strings.HasPrefix(l, "SIP/2.0 ") {
		code, reason, _ := strings.Cut(l[len("SIP/2.0 "):], " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 699 {
			return fmt.Errorf("%w: bad status line %.40q", errSIPSyntax, l)
		}
		m.status, m.reason = n, reason
		return nil
	}
	parts := strings.Split(l, " ")
	if len(parts) != 3 || parts[2] != "SIP/2.0" || parts[0] == "" || parts[1] == "" || !isToken(parts[0]) {
		return fmt.Errorf("%w: bad request line %.40q", errSIPSyntax, l)
	}
	m.request, m.method, m.ruri = true, parts[0], parts[1]
	return nil
}

func isToken(s string) bool {
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-.!%*_+`'~", r)) {
			return false
		}
	}
	return true
}

// cutHeaderEnd splits at the first empty line (CRLFCRLF or LFLF).
func cutHeaderEnd(b []byte) (head string, body []byte, ok bool) {
	s := string(b)
	i := strings.Index(s, "\r\n\r\n")
	j := strings.Index(s, "\n\n")
	switch {
	case i >= 0 && (j < 0 || i < j):
		return s[:i], b[i+4:], true
	case j >= 0:
		return s[:j], b[j+2:], true
	}
	return "", nil, false
}

func splitLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

func (m *sipMsg) get(name string) string {
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// all returns every value of a header, comma-separated values split
// (for Via and Contact).
func (m *sipMsg) all(name string) []string {
	var out []string
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			out = append(out, splitComma(h.value)...)
		}
	}
	return out
}

// splitComma splits on commas outside quotes and angle brackets.
func splitComma(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' && (i == 0 || s[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			if depth > 0 {
				depth--
			}
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if t := strings.TrimSpace(s[start:]); t != "" {
		out = append(out, t)
	}
	return out
}

// via is one parsed Via value.
type via struct {
	proto  string // "SIP/2.0/UDP"
	host   string // without brackets
	port   string
	params []sipHeader // in order; value "" with flag for valueless
	flags  map[string]bool
}

func parseVia(v string) (*via, error) {
	proto, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.HasPrefix(strings.ToUpper(proto), "SIP/2.0/") {
		return nil, fmt.Errorf("%w: bad Via %.40q", errSIPSyntax, v)
	}
	parts := strings.Split(strings.TrimSpace(rest), ";")
	host, port, err := splitHostPort(strings.TrimSpace(parts[0]))
	if err != nil {
		return nil, err
	}
	out := &via{proto: proto, host: host, port: port, flags: map[string]bool{}}
	for _, p := range parts[1:] {
		k, val, has := strings.Cut(strings.TrimSpace(p), "=")
		if k == "" {
			continue
		}
		if !has {
			out.flags[strings.ToLower(k)] = true
		}
		out.params = append(out.params, sipHeader{k, val})
	}
	return out, nil
}

func (v *via) param(name string) (string, bool) {
	for _, p := range v.params {
		if strings.EqualFold(p.name, name) {
			return p.value, true
		}
	}
	return "", false
}

// render prints the Via as pjsip does for a response: sent-by, then ttl,
// rport, maddr, received, branch, then the other parameters.
func (v *via) render(srcIP string, srcPort int) string {
	var b strings.Builder
	b.WriteString(v.proto + " " + joinHostPort(v.host, v.port))
	if t, ok := v.param("ttl"); ok {
		b.WriteString(";ttl=" + t)
	}
	if _, ok := v.param("rport"); ok {
		b.WriteString(";rport=" + itoa(srcPort))
	}
	if t, ok := v.param("maddr"); ok {
		b.WriteString(";maddr=" + t)
	}
	b.WriteString(";received=" + srcIP)
	if t, ok := v.param("branch"); ok {
		b.WriteString(";branch=" + t)
	}
	for _, p := range v.params {
		switch strings.ToLower(p.name) {
		case "ttl", "rport", "maddr", "received", "branch":
			continue
		}
		b.WriteString(";" + p.name)
		if !v.flags[strings.ToLower(p.name)] {
			b.WriteString("=" + p.value)
		}
	}
	return b.String()
}

func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", fmt.Errorf("%w: bad host %.40q", errSIPSyntax, s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", fmt.Errorf("%w: bad host %.40q", errSIPSyntax, s)
			}
			port = rest[1:]
		}
	} else {
		h, p, found := strings.Cut(s, ":")
		host, port = h, p
		if found && p == "" {
			return "", "", fmt.Errorf("%w: bad host %.40q", errSIPSyntax, s)
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("%w: empty host", errSIPSyntax)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return "", "", fmt.Errorf("%w: bad port %.10q", errSIPSyntax, port)
		}
	}
	return host, port, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" {
		return host
	}
	return host + ":" + port
}

// nameAddr is a From/To/Contact value: the URI and the header parameters.
type nameAddr struct {
	uri    string
	params string // ";tag=...;expires=..." as sent
}

func parseNameAddr(v string) (nameAddr, error) {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, "<"); i >= 0 {
		j := strings.Index(v[i:], ">")
		if j < 0 {
			return nameAddr{}, fmt.Errorf("%w: unclosed <", errSIPSyntax)
		}
		return nameAddr{uri: v[i+1 : i+j], params: strings.TrimSpace(v[i+j+1:])}, nil
	}
	// addr-spec form: parameters after ';' belong to the header.
	uri, params, _ := strings.Cut(v, ";")
	if params != "" {
		params = ";" + params
	}
	return nameAddr{uri: strings.TrimSpace(uri), params: params}, nil
}

func (n nameAddr) param(name string) (string, bool) {
	for _, p := range strings.Split(n.params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// uriUser returns the user part of a sip: or sips: URI.
func uriUser(uri string) string {
	u := uri
	switch {
	case strings.HasPrefix(strings.ToLower(u), "sip:"):
		u = u[4:]
	case strings.HasPrefix(strings.ToLower(u), "sips:"):
		u = u[5:]
	default:
		return ""
	}
	user, _, found := strings.Cut(u, "@")
	if !found {
		return ""
	}
	user, _, _ = strings.Cut(user, ":")
	user, _, _ = strings.Cut(user, ";")
	return user
}

// parseAuth parses a Digest Authorization header into lower-case keys.
func parseAuth(v string) (map[string]string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return nil, false
	}
	out := map[string]string{}
	for _, p := range splitComma(rest) {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		out[strings.ToLower(strings.TrimSpace(k))] = val
	}
	return out, true
}
