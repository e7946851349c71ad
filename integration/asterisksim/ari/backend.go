package ari

import "time"

// Info identifies the simulated Asterisk, as GET /ari/asterisk/info shows it.
type Info struct {
	SystemName string // asterisk.conf systemname, e.g. "aim-a"
	EntityID   string // e.g. "02:00:00:00:00:0a"; also every event's asterisk_id
	Version    string // e.g. "GIT-22-69535d4837"
	Started    time.Time
	Reloaded   time.Time
}

// Endpoint is one PJSIP endpoint as ARI shows it.
type Endpoint struct {
	Technology string   // "PJSIP"
	Resource   string   // "1001"
	State      string   // "online", "offline", "unknown"
	ChannelIDs []string // never nil
}

// Event is something the simulated core raises that ARI turns into a
// websocket message. Kind selects which fields matter.
type Event struct {
	Kind string // "DeviceStateChanged", "ContactStatusChange", "PeerStatusChange", "EndpointStateChange"
	Time time.Time

	Device, State string // DeviceStateChanged: "PJSIP/1001", "NOT_INUSE"

	Endpoint Endpoint // the other three kinds

	ContactURI, ContactStatus, AOR, RoundtripUsec string // ContactStatusChange
	PeerStatus                                    string // PeerStatusChange: "Reachable", "Unreachable"
}

// Backend is what the ARI server needs from the simulated Asterisk core.
// The core in package asterisksim implements it.
type Backend interface {
	Info() Info
	// Endpoints lists every configured PJSIP endpoint.
	Endpoints() []Endpoint
	// DeviceState returns a device's state as Asterisk would: "UNKNOWN" for
	// a Stasis: name never set (or deleted), "INVALID" for a name that is no
	// device (e.g. "PJSIP:1001").
	DeviceState(name string) string
	// StasisStates returns every Stasis: device currently set (name -> state).
	StasisStates() map[string]string
	// SetStasisState sets "Stasis:<x>" (persisted like astdb) and raises a
	// DeviceStateChanged event. The ARI layer validates name and state first.
	SetStasisState(name, state string) error
	// DeleteStasisState removes it (no event, as Asterisk).
	DeleteStasisState(name string) error
	// Subscribe calls fn for every event until cancel is called. fn must not block.
	Subscribe(fn func(Event)) (cancel func())
}
