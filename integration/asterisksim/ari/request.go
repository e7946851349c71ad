package ari

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// maxBody is Asterisk's MAX_CONTENT_LENGTH for request bodies.
const maxBody = 40960

// httpMethod is Asterisk's enum ast_http_method; its order is the order of
// the Allow header.
type httpMethod int

const (
	mGET httpMethod = iota
	mPOST
	mHEAD
	mPUT
	mDELETE
	mOPTIONS
)

var methodNames = [...]string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"}

func methodOf(s string) (httpMethod, bool) {
	for i, n := range methodNames {
		if n == s {
			return httpMethod(i), true
		}
	}
	return 0, false
}

// param is one name=value of the query string or of a form body, in order.
type param struct{ name, value string }

// request is what the resource callbacks see.
type request struct {
	params []param
	body   map[string]json.RawMessage // nil unless a JSON object body was sent
}

// get returns the last value of name, as the generated callbacks assign every
// match in turn.
func (q *request) get(name string) (string, bool) {
	v, found := "", false
	for _, p := range q.params {
		if p.name == name {
			v, found = p.value, true
		}
	}
	return v, found
}

// bodyString returns a string field of the JSON body. present is true when the
// field exists at all: Asterisk then overrides the query value, with NULL if
// the field is not a string.
func (q *request) bodyString(name string) (v string, ok, present bool) {
	raw, present := q.body[name]
	if !present {
		return "", false, false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, true
	}
	return v, true, true
}

// list returns an allowMultiple parameter: a JSON array or string in the
// body wins over the comma-separated query value.
func (q *request) list(name string) ([]string, bool) {
	raw, present := q.body[name]
	if !present {
		v, ok := q.get(name)
		if !ok {
			return nil, false
		}
		return splitList(v), true
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	// Neither: Asterisk would pass a NULL source; treat it as unusable.
	return []string{""}, true
}

// param returns name from the JSON body if present there, else from the
// query/form parameters.
func (q *request) param(name string) (string, bool) {
	if v, ok, present := q.bodyString(name); present {
		return v, ok
	}
	return q.get(name)
}

type requestError struct {
	code    int
	message string
}

// parseRequest collects form variables, query parameters and a JSON body
// like ast_ari_callback (form variables first, then the query string).
func parseRequest(r *http.Request) (*request, *requestError) {
	q := &request{}
	var body []byte
	if r.Body != nil && r.ContentLength != 0 { // most ARI requests carry none
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, &requestError{http.StatusBadRequest, "Error parsing request body"}
		}
		if len(b) > maxBody {
			return nil, &requestError{http.StatusRequestEntityTooLarge, "Request body too large"}
		}
		body = b
	}
	ctype := r.Header.Get("Content-Type")
	switch {
	case strings.EqualFold(ctype, "application/x-www-form-urlencoded"):
		q.params = append(q.params, parseQuery(string(body))...)
	case strings.EqualFold(ctype, "application/json") && len(body) > 0:
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, &requestError{http.StatusBadRequest, "Error parsing request body"}
		}
		// Only an object carries named fields; other JSON values are ignored.
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) == nil {
			q.body = obj
		}
	}
	q.params = append(q.params, parseQuery(r.URL.RawQuery)...)
	return q, nil
}

// parseQuery splits a query string on '&' and decodes names and values the
// way Asterisk does (ast_uri_decode, legacy HTTP: '+' is a space and a bad
// %-escape is kept as it is). Empty pieces are skipped.
func parseQuery(raw string) []param {
	var out []param
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue
		}
		name, value, _ := strings.Cut(piece, "=")
		out = append(out, param{uriDecode(name), uriDecode(value)})
	}
	return out
}

// uriDecode is ast_uri_decode with ast_uri_http_legacy: '+' is a space;
// '%' followed by two characters is decoded when sscanf("%2x") would read a
// hex digit there (one digit is enough, and both characters are consumed);
// anything else is copied. The result is a C string, so it ends at a NUL.
func uriDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]):
			v := unhex(s[i+1])
			if isHex(s[i+2]) {
				v = v<<4 | unhex(s[i+2])
			}
			b.WriteByte(v)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	out, _, _ := strings.Cut(b.String(), "\x00")
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// splitList splits an allowMultiple parameter on commas, as the generated
// callbacks do.
func splitList(v string) []string {
	return strings.Split(v, ",")
}
