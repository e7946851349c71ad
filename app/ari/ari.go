// Package ari owns doorman's narrow view of the Asterisk REST Interface:
// reading and writing Stasis: custom device states, reading one real
// device's state, and streaming device state changes, with reconnect
// signalling. Jobs depend on the Client interface only; NewNative talks to
// one Asterisk over HTTP and a websocket, and a later ari-proxy transport
// implements the same interface. Package aritest has an in-memory fake.
package ari

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// StasisPrefix starts every custom device state name ("Stasis:1001"). Only
// such devices can be written through ARI.
const StasisPrefix = "Stasis:"

// Node identifies one Asterisk server as ARI shows it.
type Node struct {
	ID   string // entity id (asterisk_id of every event), e.g. "02:00:00:00:00:0a"
	Name string // systemname from asterisk.conf, e.g. "aim-a"
}

// DeviceStateEvent is one DeviceStateChanged from Asterisk. It includes
// the echoes of Stasis: writes; consumers that republish must skip those.
type DeviceStateEvent struct {
	Node     string    // asterisk_id of the server that raised it
	Device   string    // e.g. "PJSIP/1001" or "Stasis:1001"
	State    string    // e.g. "NOT_INUSE", "RINGING"
	Time     time.Time // Asterisk's timestamp (zero if absent or unparsable)
	Received time.Time // when doorman read it off the wire
}

// Status tells whether the connection works and, if not, why.
type Status struct {
	Connected  bool      `json:"connected"`
	Node       Node      `json:"node"`
	Since      time.Time `json:"since"`           // when Connected last changed
	Err        string    `json:"error,omitempty"` // why it is not connected, e.g. "ARI: 401 unauthorized"
	Reconnects int64     `json:"reconnects"`      // successful connects after the first
	Dropped    int64     `json:"dropped"`         // events lost because the consumer was slow
}

// Client is what doorman's jobs use of one Asterisk's ARI. A transport that
// reaches several servers (ari-proxy) hands out one Client per Node.
//
// Every call is bounded by ctx and by the implementation's own request
// timeout. Device names are full Asterisk names ("PJSIP/1001",
// "Stasis:1001"); implementations escape them in URLs.
type Client interface {
	// SetStasisState sets custom device state name ("Stasis:<x>") to state
	// (NOT_INUSE, INUSE, BUSY, INVALID, UNAVAILABLE, RINGING, RINGINUSE,
	// ONHOLD). Asterisk persists it in astdb and echoes a DeviceStateChanged.
	SetStasisState(ctx context.Context, name, state string) error
	// StasisStates lists every custom device state currently set
	// (name "Stasis:<x>" -> state).
	StasisStates(ctx context.Context) (map[string]string, error)
	// DeviceState returns one device's state ("UNKNOWN" for a Stasis: name
	// never set, "INVALID" for a name that is no device).
	DeviceState(ctx context.Context, device string) (string, error)
	// Events streams every device state change of the server. The channel
	// is closed by Close. Events the consumer cannot take are dropped,
	// counted in Status, and followed by a signal on Connected.
	Events() <-chan DeviceStateEvent
	// Connected receives a value after each successful (re)connect, once
	// the device state subscription is in place, and after events were
	// dropped: both mean "re-read everything". Signals coalesce.
	Connected() <-chan struct{}
	// Status reports the connection state without blocking.
	Status() Status
	// Close stops the client and closes Events.
	Close() error
}

// Errors callers can test with errors.Is.
var (
	// ErrUnauthorized: Asterisk refused the credentials (HTTP 401).
	ErrUnauthorized = errors.New("ari: 401 unauthorized")
	// ErrNotStasis: a write to a name that is not "Stasis:<x>" (Asterisk
	// would answer 409).
	ErrNotStasis = errors.New("ari: not a Stasis: device")
	// ErrBadState: a state Asterisk cannot store (it would answer 500).
	ErrBadState = errors.New("ari: invalid device state")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("ari: client closed")
)

// HTTPError is a non-2xx reply from ARI.
type HTTPError struct {
	Method, Path string // Path is escaped, never carries credentials
	Code         int
	Message      string // ARI's {"message": ...}, if any
}

func (e *HTTPError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("ari: %s %s: %d %s", e.Method, e.Path, e.Code, e.Message)
	}
	return fmt.Sprintf("ari: %s %s: %d", e.Method, e.Path, e.Code)
}

// Is makes errors.Is(err, ErrUnauthorized) true for a 401.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && e.Code == 401
}

// StatusCode returns the HTTP status of an ARI error, or 0.
func StatusCode(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// writableStates are the states a PUT accepts (ast_devstate_val knows them;
// "UNKNOWN" is refused).
var writableStates = map[string]bool{
	"NOT_INUSE": true, "INUSE": true, "BUSY": true, "INVALID": true,
	"UNAVAILABLE": true, "RINGING": true, "RINGINUSE": true, "ONHOLD": true,
}

// CheckStasisWrite validates a SetStasisState call before it reaches
// Asterisk, so a bad name or state fails fast with a clear error.
func CheckStasisWrite(name, state string) error {
	if !strings.HasPrefix(name, StasisPrefix) || len(name) == len(StasisPrefix) {
		return fmt.Errorf("%w: %q", ErrNotStasis, name)
	}
	if !writableStates[state] {
		return fmt.Errorf("%w: %q", ErrBadState, state)
	}
	return nil
}
