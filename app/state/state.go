// Package state owns doorman's shared cluster state: strike counters, bans,
// registrations, device states and server heartbeats, with a change feed.
// Redis (several servers) and an embedded store (one server, no Redis)
// implement the same Store interface and pass the same conformance tests.
package state

import (
	"context"
	"net/netip"
	"time"
)

// Ban is a cluster-wide ban decision.
type Ban struct {
	Prefix    netip.Prefix `json:"prefix"`
	Permanent bool         `json:"permanent"`
	Expires   time.Time    `json:"expires,omitzero"` // zero when permanent
	Reason    string       `json:"reason"`
	Server    string       `json:"server"`  // server (systemname) that decided the ban
	Strikes   int64        `json:"strikes"` // failed attempts that led to it
	Created   time.Time    `json:"created"`
}

// EventKind tells what a feed event means.
type EventKind int

const (
	// Added: the item was added or changed.
	Added EventKind = iota
	// Removed: the item was removed.
	Removed
	// Resync: the feed was interrupted (reconnect); events may have been lost,
	// so the consumer must re-read the full state.
	Resync
	// ServerAlive (registration feed): a server's heartbeat; it is a location
	// until the event's Registration.Expires unless another beat follows.
	ServerAlive
	// ServerDown (registration feed): a server's heartbeat has ended; its
	// registrations are no longer locations (they stay stored, hidden, and
	// show again if it beats before they expire).
	ServerDown
)

// BanEvent is one entry of the ban feed.
type BanEvent struct {
	Kind EventKind
	Ban  Ban // for Removed only Prefix is meaningful
}

// Bans holds strike counters and bans.
type Bans interface {
	// Incr atomically increments counter key and returns its value; the
	// counter expires window after its first increment.
	Incr(ctx context.Context, key string, window time.Duration) (int64, error)
	// Reset deletes counter key.
	Reset(ctx context.Context, key string) error
	// PutBan stores b (replacing one for the same prefix) and publishes it.
	PutBan(ctx context.Context, b Ban) error
	// DeleteBan removes the ban for p, if any, and publishes the removal.
	DeleteBan(ctx context.Context, p netip.Prefix) error
	// ListBans returns every ban that has not expired.
	ListBans(ctx context.Context) ([]Ban, error)
	// WatchBans streams ban changes made by any agent (this one included)
	// until ctx ends. After a reconnect it sends a Resync event.
	WatchBans(ctx context.Context) (<-chan BanEvent, error)
}

// BanScanner is an optional part of Bans for stores that can list bans a
// page at a time: a consumer of 100,000 bans (the Intrusion Monitor's
// restore at start) can then work on one page while the next is read, and
// never holds the whole listing twice.
type BanScanner interface {
	// ScanBans calls fn with every ban that has not expired, a page at a
	// time, in no particular order, each ban once. It stops at fn's first
	// error and returns it; a page passed to fn is fn's to keep.
	ScanBans(ctx context.Context, fn func(page []Ban) error) error
}

// Registration is one contact of one AOR registered on one server.
type Registration struct {
	Server     string    `json:"server"`      // registering server's systemname (reg_server)
	ServerAddr string    `json:"server_addr"` // its SIP address ip:port for inter-server dialing
	Endpoint   string    `json:"endpoint"`    // PJSIP endpoint name
	AOR        string    `json:"aor"`
	Contact    string    `json:"contact"` // contact URI
	Source     string    `json:"source"`  // packet source ip:port, if known
	UserAgent  string    `json:"user_agent,omitempty"`
	Expires    time.Time `json:"expires"`
	Updated    time.Time `json:"updated"`
}

// Registrations is the cluster's registration index.
type Registrations interface {
	// PutRegistration adds or refreshes r; it expires by itself at r.Expires.
	PutRegistration(ctx context.Context, r Registration) error
	// DeleteRegistration removes one contact.
	DeleteRegistration(ctx context.Context, server, aor, contact string) error
	// ReplaceRegistrations makes regs the whole truth for server (full resync).
	ReplaceRegistrations(ctx context.Context, server string, regs []Registration) error
	// LookupAOR returns the unexpired registrations of aor on live servers.
	LookupAOR(ctx context.Context, aor string) ([]Registration, error)
	// AllRegistrations returns every unexpired registration on live servers.
	AllRegistrations(ctx context.Context) ([]Registration, error)
}

// RegistrationEvent is one entry of the registration feed.
type RegistrationEvent struct {
	Kind EventKind
	// Added: the whole registration (new or refreshed). Removed: Server, AOR
	// and Contact. ServerAlive: Server, and Expires when the heartbeat ends.
	// ServerDown: Server.
	Registration Registration
}

// RegistrationWatcher is an optional part of Registrations for stores that
// publish every registration change, so a consumer can keep a full copy
// current without polling (the Extension Finder's index).
//
// Every PutRegistration, DeleteRegistration and ReplaceRegistrations of any
// agent is published (Added, Removed), as is every Heartbeat (ServerAlive)
// and a heartbeat found ended (ServerDown, not necessarily at once). Expiry
// is not necessarily published: a consumer drops a registration at its
// Expires and a server at its ServerAlive's Expires by itself. A consumer
// first watches, then reads AllRegistrations and Servers, then applies the
// events in order: each sets or removes one registration or server, so
// events older than the reading are harmless. AllRegistrations leaves out
// servers that were dead at the reading, so a ServerAlive of such a server
// means re-reading.
type RegistrationWatcher interface {
	// WatchRegistrations streams registration and heartbeat changes until
	// ctx ends. After a reconnect (or a reader too slow) it sends Resync:
	// re-read everything.
	WatchRegistrations(ctx context.Context) (<-chan RegistrationEvent, error)
}

// DeviceState is one real device's state on one server.
type DeviceState struct {
	Server  string    `json:"server"`
	Device  string    `json:"device"` // e.g. PJSIP/1001; never Stasis:...
	State   string    `json:"state"`  // NOT_INUSE, INUSE, RINGING, ...
	Updated time.Time `json:"updated"`
}

// DeviceEvent is one entry of the device-state feed.
type DeviceEvent struct {
	Kind  EventKind
	State DeviceState
}

// Devices holds every server's device states.
type Devices interface {
	// PutDeviceState stores s and publishes it if it changed.
	PutDeviceState(ctx context.Context, s DeviceState) error
	// ReplaceDeviceStates makes states the whole truth for server.
	ReplaceDeviceStates(ctx context.Context, server string, states []DeviceState) error
	// DeviceStates returns every stored state of live servers.
	DeviceStates(ctx context.Context) ([]DeviceState, error)
	// WatchDeviceStates streams changes until ctx ends; Resync after a reconnect.
	WatchDeviceStates(ctx context.Context) (<-chan DeviceEvent, error)
}

// Cluster tracks which servers are alive.
type Cluster interface {
	// Heartbeat marks server alive for ttl.
	Heartbeat(ctx context.Context, server string, ttl time.Duration) error
	// Servers returns the live servers and when each last beat.
	Servers(ctx context.Context) (map[string]time.Time, error)
}

// Store is everything doorman shares between servers.
type Store interface {
	Bans
	Registrations
	Devices
	Cluster
	// Ping checks the connection.
	Ping(ctx context.Context) error
	Close() error
}
