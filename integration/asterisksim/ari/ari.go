// Package ari serves the Asterisk REST Interface of the simulated Asterisk 22:
// the REST resources doorman uses (asterisk/info, endpoints, deviceStates,
// applications) and the /ari/events websocket, with the status codes, bodies,
// headers, event shapes and Stasis-application routing of a real Asterisk 22
// (see shared/asterisk-transcripts). The simulated core behind it is reached
// only through Backend.
//
// Backend contract as used here: SetStasisState and DeleteStasisState get
// the full name ("Stasis:1001", scheme spelled so even if the client wrote
// "stasis:") and, for Set, a canonical upper-case state other than UNKNOWN;
// the ARI layer has validated both. StasisStates may key by full or bare name.
// Subscribe callbacks are called per websocket; they never block and never
// call back into the Backend, so the core may raise events under its lock.
package ari

import (
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
)

// queueSize bounds each websocket's outgoing queue. A client that falls this
// far behind is disconnected, as Asterisk drops a websocket whose writes time
// out; the backend is never blocked by a slow reader. Asterisk queues an
// app's events without a bound, so a burst of a few thousand (a restart's
// device states, a benchmark's changes as fast as possible) must fit.
const queueSize = 8192

// Handler is the ARI HTTP server of one simulated Asterisk.
type Handler struct {
	b     Backend
	users map[string]string
	log   *slog.Logger
	reg   *registry
	root  *node
	queue int
}

// NewHandler returns the ARI server for b. users maps each ARI user to its
// plaintext password (ari.conf). A nil log discards. It serves request paths
// starting with /ari (mount it at the root, or at both /ari and /ari/).
func NewHandler(b Backend, users map[string]string, log *slog.Logger) http.Handler {
	return New(b, users, log)
}

// New is NewHandler with the concrete type, for Close.
func New(b Backend, users map[string]string, log *slog.Logger) *Handler {
	return newHandler(b, users, log, queueSize)
}

// Close drops every open /ari/events websocket, as an Asterisk shutdown
// does; http.Server.Close does not reach hijacked connections. The
// handler keeps serving; a restarted Asterisk should get a new Handler, whose
// apps start without subscriptions.
func (h *Handler) Close() {
	for _, c := range h.reg.conns() {
		c.close(false)
	}
}

func newHandler(b Backend, users map[string]string, log *slog.Logger, queue int) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := make(map[string]string, len(users))
	for k, v := range users {
		u[k] = v
	}
	h := &Handler{b: b, users: u, log: log, reg: newRegistry(), queue: queue}
	h.root = h.tree()
	return h
}

// ServeHTTP follows res_ari.c ast_ari_callback: parse parameters and body,
// authenticate, reject a trailing slash, then walk the resource tree.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &response{w: w, server: "Asterisk/" + h.b.Info().Version, method: r.Method}
	path := r.URL.EscapedPath()
	if path != "/ari" && !strings.HasPrefix(path, "/ari/") {
		rw.httpError(http.StatusNotFound, "Not Found", "The requested URL was not found on this server.")
		return
	}
	method, ok := methodOf(r.Method)
	if !ok {
		rw.httpError(http.StatusNotImplemented, "Not Implemented", "")
		return
	}
	uri := strings.TrimPrefix(strings.TrimPrefix(path, "/ari"), "/")

	req, perr := parseRequest(r)
	if perr != nil {
		rw.error(perr.code, perr.message)
		return
	}
	if !h.authenticate(r, req.params) {
		rw.header("WWW-Authenticate", `Basic realm="Asterisk REST Interface"`)
		rw.error(http.StatusUnauthorized, "Authentication required")
		return
	}
	if strings.HasSuffix(uri, "/") {
		rw.error(http.StatusNotFound, "ARI URLs do not end with a slash. Try /ari/"+strings.TrimSuffix(uri, "/"))
		return
	}
	h.invoke(rw, r, method, uri, req)
}

// authenticate checks HTTP Basic first and only then ?api_key=user:pass, as
// Asterisk does: a wrong Authorization header is not rescued by an api_key.
func (h *Handler) authenticate(r *http.Request, params []param) bool {
	if user, pass, ok := basicAuth(r.Header.Get("Authorization")); ok {
		return h.validUser(user, pass)
	}
	for _, p := range params {
		if strings.EqualFold(p.name, "api_key") {
			user, pass, ok := strings.Cut(p.value, ":")
			return ok && h.validUser(user, pass)
		}
	}
	return false
}

func (h *Handler) validUser(user, pass string) bool {
	want, ok := h.users[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
}

func basicAuth(header string) (user, pass string, ok bool) {
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
