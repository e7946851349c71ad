// Package ami owns doorman's manager (AMI) connection to its local Asterisk:
// dialing, login, reconnect with backoff, the wire parser, actions, and typed
// security events. It makes no decisions.
package ami

import (
	"context"
	"strings"
)

// Field is one "Key: Value" line of an AMI message.
type Field struct {
	Key, Value string
}

// Message is one AMI message (event or response) in wire order.
type Message struct {
	Fields []Field
}

// Get returns the value of the first field named key (case-insensitive), or "".
func (m *Message) Get(key string) string {
	for _, f := range m.Fields {
		if strings.EqualFold(f.Key, key) {
			return f.Value
		}
	}
	return ""
}

// Event returns the Event field, or "" for responses.
func (m *Message) Event() string { return m.Get("Event") }

// EventConnected is the Event name of the synthetic message the client
// delivers to subscribers after every successful (re)login, so jobs know to
// resynchronise.
const EventConnected = "DoormanConnected"

// Conn is what doorman's jobs use of an AMI connection. *Client implements it;
// tests use fakes.
type Conn interface {
	// Subscribe returns every event the server sends, plus a synthetic
	// EventConnected message after each successful (re)login, until cancel
	// is called. The channel has buf slots; events a full subscriber cannot
	// take are counted as dropped, never block the reader.
	Subscribe(buf int) (events <-chan Message, cancel func())
	// Action sends action (an ActionID is added) and returns its Response.
	// For list actions (PJSIPShowContacts, DeviceStateList, ...) list holds
	// the events that follow, up to but not including the "...Complete" event.
	Action(ctx context.Context, action Message) (resp Message, list []Message, err error)
}
