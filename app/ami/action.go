package ami

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrNotConnected is returned by Action while the client is not logged in.
var ErrNotConnected = errors.New("ami: not connected")

// ActionError is an Error response from Asterisk.
type ActionError struct {
	Action  string // the action's name, e.g. "Getvar"
	Message string // Asterisk's Message field, e.g. "No variable specified"
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("ami: action %s failed: %s", e.Action, e.Message)
}

// pending is one action waiting for its response and, for list actions,
// its events up to the "...Complete" event.
type pending struct {
	action string
	resp   Message
	list   []Message
	inList bool // the response said "EventList: start"
	done   chan struct{}
	err    error
}

// session is one logged-in connection.
type session struct {
	conn         net.Conn
	writeTimeout time.Duration

	wmu sync.Mutex // one action on the wire at a time

	mu      sync.Mutex
	pending map[string]*pending
	// abandoned holds the ActionIDs of actions given up (ctx ended) before
	// their reply finished, true once their list has started, so late list
	// items are swallowed instead of reaching subscribers as live events.
	abandoned map[string]bool
	err       error // set once the connection is gone
}

// maxAbandoned bounds the abandoned set; past it the set starts over.
const maxAbandoned = 1024

func newSession(conn net.Conn, writeTimeout time.Duration) *session {
	return &session{conn: conn, writeTimeout: writeTimeout,
		pending: make(map[string]*pending), abandoned: make(map[string]bool)}
}

// do sends action with the given ActionID and waits for its reply.
func (s *session) do(ctx context.Context, id string, action Message) (Message, []Message, error) {
	name := action.Get("Action")
	p := &pending{action: name, done: make(chan struct{})}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return Message{}, nil, fmt.Errorf("ami: action %s: %w", name, ErrNotConnected)
	}
	s.pending[id] = p
	s.mu.Unlock()

	if err := s.write(ctx, encodeAction(action, id)); err != nil {
		s.forget(id)
		return Message{}, nil, fmt.Errorf("ami: action %s: sending: %w", name, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		s.abandon(id)
		return Message{}, nil, fmt.Errorf("ami: action %s: %w", name, ctx.Err())
	}
	if p.err != nil {
		return Message{}, nil, p.err
	}
	return p.resp, p.list, responseError(name, &p.resp)
}

func (s *session) write(ctx context.Context, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	deadline := time.Now().Add(s.writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := s.conn.Write(b)
	return err
}

func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *session) abandon(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	if !ok {
		return // the reply completed meanwhile
	}
	delete(s.pending, id)
	if len(s.abandoned) >= maxAbandoned {
		clear(s.abandoned)
	}
	s.abandoned[id] = p.inList
}

// route hands a response, or an event belonging to a pending list action,
// to its waiting Action. It reports whether m was consumed.
func (s *session) route(m *Message) bool {
	id, ok := lookup(m, "ActionID")
	if !ok {
		return false
	}
	resp, isResp := lookup(m, "Response")
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[id]
	if p == nil {
		inList, ok := s.abandoned[id]
		switch {
		case !ok:
			return false
		case isResp:
			if isListStart(resp, m) {
				s.abandoned[id] = true
			} else {
				delete(s.abandoned, id)
			}
			return true
		case !inList:
			return false
		}
		if strings.EqualFold(m.Get("EventList"), "Complete") {
			delete(s.abandoned, id)
		}
		return true
	}
	if isResp {
		p.resp = *m
		if isListStart(resp, m) {
			p.inList = true
			return true
		}
		delete(s.pending, id)
		close(p.done)
		return true
	}
	if !p.inList {
		return false // e.g. a UserEvent echoing our ActionID before its response
	}
	if strings.EqualFold(m.Get("EventList"), "Complete") {
		delete(s.pending, id)
		close(p.done)
		return true
	}
	p.list = append(p.list, *m)
	return true
}

func isListStart(resp string, m *Message) bool {
	return strings.EqualFold(resp, "Success") && strings.EqualFold(m.Get("EventList"), "start")
}

// close fails every pending action; the first error sticks.
func (s *session) close(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	for id, p := range s.pending {
		p.err = fmt.Errorf("ami: action %s: connection lost before the reply: %w", p.action, err)
		delete(s.pending, id)
		close(p.done)
	}
	_ = s.conn.Close()
}

func (s *session) closeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// responseError turns an Error response into an *ActionError. An Error whose
// Message is "No <things> found" is how Asterisk answers a list action with
// nothing to list (PJSIPShowContacts: "No Contacts found"): that is an empty
// list, not a failure.
func responseError(action string, resp *Message) error {
	if !strings.EqualFold(resp.Get("Response"), "Error") {
		return nil
	}
	msg := strings.TrimSpace(resp.Get("Message"))
	if isNoneFound(msg) {
		return nil
	}
	return &ActionError{Action: action, Message: msg}
}

func isNoneFound(msg string) bool {
	l := strings.ToLower(msg)
	return strings.HasPrefix(l, "no ") && strings.HasSuffix(l, " found")
}

// encodeAction renders action with its ActionID replaced by id.
func encodeAction(action Message, id string) []byte {
	n := 32 + len(id)
	for _, f := range action.Fields {
		n += len(f.Key) + len(f.Value) + 4
	}
	b := make([]byte, 0, n)
	for _, f := range action.Fields {
		if strings.EqualFold(f.Key, "ActionID") {
			continue
		}
		b = append(b, f.Key...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if id != "" {
		b = append(b, "ActionID: "...)
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// checkAction refuses what would break the framing: CR or LF anywhere, a
// colon or nothing in a key.
func checkAction(action Message) error {
	name := action.Get("Action")
	if name == "" {
		return errors.New("ami: action has no Action field")
	}
	for _, f := range action.Fields {
		if f.Key == "" || strings.ContainsAny(f.Key, ":\r\n") {
			return fmt.Errorf("ami: action %s: bad field name %q", name, f.Key)
		}
		if err := checkValue(f.Value); err != nil {
			return fmt.Errorf("ami: action %s: field %s: %w", name, f.Key, err)
		}
	}
	return nil
}

func checkValue(v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return errors.New("value contains a line break")
	}
	return nil
}
