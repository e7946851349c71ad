package ari

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// response writes replies with the headers of Asterisk's ast_http_send:
// Server, Cache-Control and, for a JSON body, "Content-type" spelled as
// Asterisk spells it.
type response struct {
	w      http.ResponseWriter
	server string
	method string
	extra  [][2]string
}

// header queues an extra header for the reply (Allow, WWW-Authenticate).
func (rw *response) header(k, v string) { rw.extra = append(rw.extra, [2]string{k, v}) }

func (rw *response) base() http.Header {
	h := rw.w.Header()
	h.Set("Server", rw.server)
	h.Set("Cache-Control", "no-cache, no-store")
	for _, kv := range rw.extra {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
	return h
}

// json sends v compactly, without Go's HTML escaping, as jansson does.
func (rw *response) json(code int, v any) {
	body, err := marshal(v)
	if err != nil {
		// Only a programming error gets here; answer like Asterisk's
		// failed encoding (500, empty body).
		rw.raw(http.StatusInternalServerError, "", nil)
		return
	}
	rw.raw(code, "application/json", body)
}

// error sends {"message": msg}, ast_ari_response_error.
func (rw *response) error(code int, msg string) {
	rw.json(code, struct {
		Message string `json:"message"`
	}{msg})
}

// noContent is ast_ari_response_no_content.
func (rw *response) noContent() { rw.raw(http.StatusNoContent, "", nil) }

func (rw *response) raw(code int, ctype string, body []byte) {
	h := rw.base()
	if ctype != "" {
		// Asterisk writes "Content-type"; the nil canonical key stops Go
		// from sniffing and adding its own.
		h["Content-type"] = []string{ctype}
		h["Content-Type"] = nil
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.w.WriteHeader(code)
	if rw.method != http.MethodHead && len(body) > 0 {
		_, _ = rw.w.Write(body)
	}
}

// httpError is main/http.c ast_http_error: an HTML page, used where ARI
// is not yet involved (unknown method, websocket refusals).
func (rw *response) httpError(code int, title, text string) {
	body := fmt.Sprintf("<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n"+
		"<html><head>\r\n<title>%d %s</title>\r\n</head><body>\r\n<h1>%s</h1>\r\n<p>%s</p>\r\n<hr />\r\n"+
		"<address>Asterisk Server</address>\r\n</body></html>\r\n", code, title, title, text)
	h := rw.w.Header()
	h.Set("Server", rw.server)
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.w.WriteHeader(code)
	_, _ = rw.w.Write([]byte(body))
}

// marshal encodes compactly with no HTML escaping and no trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("ari: encode %T: %w", v, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
