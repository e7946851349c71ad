package aritest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// EntityID is the Server's asterisk_id (the transcripts' "aim-a").
const EntityID = "02:00:00:00:00:0a"

// Server is a small ARI over real HTTP and websocket (httptest), answering
// as Asterisk 22 does in asterisk-transcripts/ari-rest.txt: basic auth
// (401 otherwise), /asterisk/info, application subscriptions, and
// /deviceStates with 204/409/500 and an echo event for every PUT.
type Server struct {
	srv        *httptest.Server
	user, pass string

	mu      sync.Mutex
	stasis  map[string]string
	devices map[string]string
	paths   []string // method, escaped path and query of every request
	subs    []string // eventSource of every subscription POST
	conns   []*wsConn
	joined  chan struct{} // closed and replaced whenever a websocket registers
	block   chan struct{}
	putErr  map[string]int
	onPut   func(name, state string)
}

type wsConn struct {
	mu sync.Mutex // gorilla allows one concurrent writer
	c  *websocket.Conn
}

// NewServer starts a server accepting user/pass; Close stops it.
func NewServer(user, pass string) *Server {
	s := &Server{user: user, pass: pass, stasis: map[string]string{}, devices: map[string]string{}, putErr: map[string]int{},
		joined: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the REST root, e.g. http://127.0.0.1:port/ari.
func (s *Server) URL() string { return s.srv.URL + "/ari" }

// Close drops every websocket and stops the server.
func (s *Server) Close() {
	s.DropAll()
	s.srv.Close()
}

var writable = map[string]bool{"NOT_INUSE": true, "INUSE": true, "BUSY": true, "INVALID": true,
	"UNAVAILABLE": true, "RINGING": true, "RINGINUSE": true, "ONHOLD": true}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != s.user || p != s.pass {
		reply(w, 401, map[string]string{"message": "Authentication required"})
		return
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/ari")
	s.mu.Lock()
	s.paths = append(s.paths, r.Method+" "+path+"?"+r.URL.RawQuery)
	block := s.block
	s.mu.Unlock()
	switch {
	case path == "/events":
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, &wsConn{c: c})
		close(s.joined)
		s.joined = make(chan struct{})
		s.mu.Unlock()
		go func() { // read until closed; answers pings
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	case path == "/asterisk/info":
		reply(w, 200, map[string]any{"system": map[string]string{"version": "GIT-22-69535d4837", "entity_id": EntityID},
			"config": map[string]any{"name": "aim-a", "default_language": "en"},
			"status": map[string]string{"startup_time": "2026-11-25T11:26:23.659+0000"}})
	case strings.HasPrefix(path, "/applications/") && r.Method == http.MethodPost:
		// Asterisk registers an application before its websocket's 101
		// goes out; gorilla registers here only after, so a client's
		// subscription POST could overtake it. Wait for the websocket, as
		// the real order guarantees.
		s.waitConn(r.Context())
		s.mu.Lock()
		s.subs = append(s.subs, r.URL.Query().Get("eventSource"))
		s.mu.Unlock()
		reply(w, 200, map[string]any{"name": strings.Split(path, "/")[2], "device_names": []string{"__AST_DEVICE_STATE_ALL_TOPIC"}})
	case path == "/deviceStates" && r.Method == http.MethodGet:
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		s.mu.Lock()
		list := []map[string]string{}
		for k, v := range s.stasis {
			list = append(list, map[string]string{"name": k, "state": v})
		}
		s.mu.Unlock()
		reply(w, 200, list)
	case strings.HasPrefix(path, "/deviceStates/"):
		s.device(w, r, strings.TrimPrefix(r.URL.Path, "/ari/deviceStates/"))
	default:
		reply(w, 404, map[string]string{"message": "Resource not found"})
	}
}

func (s *Server) device(w http.ResponseWriter, r *http.Request, name string) {
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		st, ok := s.stasis[name]
		if !ok {
			st, ok = s.devices[name]
		}
		if !ok {
			st = "INVALID"
			if strings.HasPrefix(name, "Stasis:") {
				st = "UNKNOWN"
			}
		}
		s.mu.Unlock()
		reply(w, 200, map[string]string{"name": name, "state": st})
	case http.MethodPut:
		if !strings.HasPrefix(name, "Stasis:") {
			reply(w, 409, map[string]string{"message": "Uncontrolled device specified"})
			return
		}
		st := r.URL.Query().Get("deviceState")
		s.mu.Lock()
		code := s.putErr[name]
		s.mu.Unlock()
		if !writable[st] || code == 500 {
			reply(w, 500, map[string]string{"message": "Unknown device"})
			return
		}
		if code != 0 {
			reply(w, code, map[string]string{"message": "injected"})
			return
		}
		s.mu.Lock()
		s.stasis[name] = st
		hook := s.onPut
		s.mu.Unlock()
		w.WriteHeader(204)
		s.Send(name, st)
		if hook != nil {
			hook(name, st)
		}
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.stasis, name) // no event, as Asterisk
		s.mu.Unlock()
		w.WriteHeader(204)
	default:
		reply(w, 405, map[string]string{"message": "Method not allowed"})
	}
}

// Send pushes a DeviceStateChanged to every websocket, byte-shaped like
// asterisk-transcripts/ari-events.jsonl, and records a real device's state.
func (s *Server) Send(device, state string) {
	msg := `{"type":"DeviceStateChanged","application":"doorman","timestamp":"2026-11-25T11:26:36.022+0000","device_state":{"name":"` +
		device + `","state":"` + state + `"},"asterisk_id":"` + EntityID + `"}`
	s.mu.Lock()
	if !strings.HasPrefix(device, "Stasis:") {
		s.devices[device] = state
	}
	conns := append([]*wsConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		_ = c.c.WriteMessage(websocket.TextMessage, []byte(msg))
		c.mu.Unlock()
	}
}

// waitConn returns once a websocket is registered, or when ctx ends.
func (s *Server) waitConn(ctx context.Context) {
	for {
		s.mu.Lock()
		n, joined := len(s.conns), s.joined
		s.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-joined:
		case <-ctx.Done():
			return
		}
	}
}

// DropAll closes every websocket (a network hiccup or an Asterisk restart).
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.c.Close()
	}
	s.conns = nil
}

// Subscriptions returns the eventSource of every subscription POST.
func (s *Server) Subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subs...)
}

// Seen reports whether a request line ("PUT /deviceStates/Stasis:1?...",
// escaped as sent) starting with prefix was received.
func (s *Server) Seen(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.paths {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// Block makes GET /deviceStates wait until ch is closed (nil: no wait).
func (s *Server) Block(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block = ch
}

// SetPutError makes PUTs to name answer code (0 clears).
func (s *Server) SetPutError(name string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		delete(s.putErr, name)
	} else {
		s.putErr[name] = code
	}
}

// SetStasis stores a state without an event (astdb replay).
func (s *Server) SetStasis(name, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stasis[name] = state
}

// Stasis returns a stored Stasis: state ("" if unset).
func (s *Server) Stasis(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stasis[name]
}

// OnPut calls fn after every successful PUT.
func (s *Server) OnPut(fn func(name, state string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPut = fn
}
