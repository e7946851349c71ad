package asterisksim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/agi"
	"github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// contact is one registered PJSIP contact (max_contacts=1, so one per AOR).
type contact struct {
	AOR       string
	URI       string
	CallID    string
	ViaAddr   string
	ViaPort   string
	UserAgent string
	Source    string // RemoteAddress form, e.g. IPV4/UDP/127.0.0.1/5070
	Expires   time.Time

	// qualify state (Config.QualifyFrequency > 0)
	send      func([]byte) // toward the contact's packet source
	localHost string       // our address as the phone reached it
	status    string       // "" (NonQualified), "Reachable", "Unreachable"
	nextProbe time.Time
	probeID   string    // Call-ID of the OPTIONS in flight
	probeSent time.Time // zero when none is in flight
}

// Contact is a registered contact as the control surface lists it.
type Contact struct {
	AOR       string    `json:"aor"`
	URI       string    `json:"uri"`
	CallID    string    `json:"call_id"`
	UserAgent string    `json:"user_agent"`
	Source    string    `json:"source"`
	Expires   time.Time `json:"expires"`
	RegServer string    `json:"reg_server"`
}

// core is the simulated Asterisk's state: endpoints, contacts, device
// states, hints and the event hub. It outlives restarts; Restart resets it.
type core struct {
	cfg  Config
	log  *slog.Logger
	hub  *hub
	tid  int
	mu   sync.Mutex
	now  func() time.Time
	boot time.Time

	contacts   map[string]*contact   // AOR -> contact
	pjsip      map[string]string     // endpoint -> PJSIP/<ext> state
	other      map[string]string     // other devices set through SetDeviceState
	stasis     map[string]string     // "Stasis:x" -> state (what ARI GET shows)
	hintStasis map[string]string     // "Stasis:x" -> last value the hints saw (survives DELETE)
	extLast    map[string]int        // extension -> last reported extension state
	calls      map[string]*pjsipCall // Call-ID -> outgoing call of an Originate (calls.go)
	trace      []DeviceChange        // Config.TraceDevices: states stored since the last takeTrace

	// localCtx is the context of the running simulator (nil while it is
	// stopped): the Local channels of Originates (originate.go) end with
	// it, and locals lets a stop wait for them, as an Asterisk that exits
	// hangs up its channels.
	localCtx context.Context
	locals   sync.WaitGroup

	// runAGI runs AGI() for an Originate into E2EContext; restart restarts
	// the whole simulator (AMI "core restart now"). Set once by Sim.New.
	runAGI  func(ctx context.Context, appData string, ch agi.Channel, opts ...agi.Option) (*agi.Result, error)
	restart func()
}

var _ ari.Backend = (*core)(nil)

func newCore(cfg Config, log *slog.Logger) *core {
	c := &core{cfg: cfg, log: log, hub: newHub(), tid: 11000 + os.Getpid()%1000, now: time.Now}
	c.reset(nil)
	return c
}

// reset puts the core in the state of a freshly started Asterisk, with
// the persisted Stasis states replayed.
func (c *core) reset(persisted map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot = c.now()
	c.contacts = map[string]*contact{}
	c.pjsip = map[string]string{}
	for ep := range c.cfg.Endpoints {
		c.pjsip[ep] = "UNAVAILABLE"
	}
	c.other = map[string]string{}
	c.stasis = map[string]string{}
	c.hintStasis = map[string]string{}
	for k, v := range persisted {
		c.stasis[k] = v
		c.hintStasis[k] = v
	}
	for _, call := range c.calls {
		if call.result != nil { // a synchronous Originate still waiting
			go call.result(false)
		}
		for _, t := range call.timers {
			t.Stop()
		}
	}
	c.calls = map[string]*pjsipCall{} // a restart drops every channel
	c.extLast = map[string]int{}
	for _, ext := range c.endpointNames() {
		c.extLast[ext] = c.hintStateLocked(ext)
	}
}

func (c *core) endpointNames() []string {
	names := make([]string, 0, len(c.cfg.Endpoints))
	for n := range c.cfg.Endpoints {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// emit sends one event to every subscriber (AMI sessions, security log, ARI).
func (c *core) emit(e event) { c.hub.emit(e) }

// startLocals lets Originates start Local channels, which end with ctx.
func (c *core) startLocals(ctx context.Context) {
	c.mu.Lock()
	c.localCtx = ctx
	c.mu.Unlock()
}

// goLocal runs f(ctx) on its own goroutine, ctx ending with the running
// simulator; false when the simulator is stopped.
func (c *core) goLocal(f func(ctx context.Context)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := c.localCtx
	if ctx == nil {
		return false
	}
	c.locals.Add(1) // under c.mu: never concurrent with stopLocals' Wait
	go func() {
		defer c.locals.Done()
		f(ctx)
	}()
	return true
}

// stopLocals refuses new Local channels and waits for the running ones,
// whose context the caller has cancelled.
func (c *core) stopLocals() {
	c.mu.Lock()
	c.localCtx = nil
	c.mu.Unlock()
	c.locals.Wait()
}

// pjsipTID and amiTID are the thread ids shown in NOTICE lines.
const pjsipTID = 11218

func (c *core) emitNotice(tid int, source, text string) {
	c.emit(event{notice: &notice{tid: tid, source: source, text: text}})
}

func (c *core) emitSec(s *secEvent) {
	if s.time.IsZero() {
		s.time = c.now()
	}
	c.emit(event{ami: s.ami(), sec: s})
}

// ---- hints ----

func (c *core) hintDevices(ext string) []string {
	if c.cfg.PlainHints {
		return []string{"PJSIP/" + ext}
	}
	return []string{"PJSIP/" + ext, "Stasis:" + ext}
}

func (c *core) hintText(ext string) string { return strings.Join(c.hintDevices(ext), "&") }

// hintStateLocked aggregates the hint's devices into an extension state.
func (c *core) hintStateLocked(ext string) int {
	devs := c.hintDevices(ext)
	states := make([]string, 0, len(devs))
	for _, d := range devs {
		if strings.HasPrefix(d, "Stasis:") {
			s, ok := c.hintStasis[d]
			if !ok {
				s = "UNKNOWN"
			}
			states = append(states, s)
			continue
		}
		states = append(states, c.deviceStateLocked(d))
	}
	return extState(aggregate(states))
}

func (c *core) extensionStatus(ext string, state int, actionID string) *amiEvent {
	f := []kv{}
	if actionID != "" {
		f = append(f, kv{"ActionID", actionID})
	}
	f = append(f, kv{"Exten", ext}, kv{"Context", c.cfg.Context}, kv{"Hint", c.hintText(ext)},
		kv{"Status", fmt.Sprint(state)}, kv{"StatusText", extStateText(state)})
	return &amiEvent{name: "ExtensionStatus", class: "call", fields: f}
}

// updateHintsLocked re-evaluates the hints that contain dev. Like pbx.c, an
// unchanged state is still reported while it has the RINGING bit.
func (c *core) updateHintsLocked(dev string) {
	for _, ext := range c.endpointNames() {
		if !slices.Contains(c.hintDevices(ext), dev) {
			continue
		}
		st := c.hintStateLocked(ext)
		if st == c.extLast[ext] && st&extRinging == 0 {
			continue
		}
		c.extLast[ext] = st
		c.emit(event{ami: c.extensionStatus(ext, st, "")})
	}
}

// ---- device states ----

// deviceStateLocked is ast_device_state(name).
func (c *core) deviceStateLocked(name string) string {
	switch {
	case strings.HasPrefix(name, "Stasis:"):
		if s, ok := c.stasis[name]; ok {
			return s
		}
		return "UNKNOWN"
	case strings.HasPrefix(name, "PJSIP/"):
		if s, ok := c.pjsip[strings.TrimPrefix(name, "PJSIP/")]; ok {
			return s
		}
		return "INVALID"
	}
	if s, ok := c.other[name]; ok {
		return s
	}
	if strings.HasPrefix(name, "Custom:") {
		return "UNKNOWN"
	}
	return "INVALID"
}

// setDeviceLocked stores a device state and raises DeviceStateChange and
// the hint updates. always forces the event even if the state is unchanged
// (a Stasis PUT always publishes).
func (c *core) setDeviceLocked(name, state string, always bool) {
	if c.cfg.TraceDevices {
		c.trace = append(c.trace, DeviceChange{Device: name, State: state, At: c.now().UnixNano()})
	}
	old := c.deviceStateLocked(name)
	switch {
	case strings.HasPrefix(name, "Stasis:"):
		c.stasis[name] = state
		c.hintStasis[name] = state
	case strings.HasPrefix(name, "PJSIP/"):
		c.pjsip[strings.TrimPrefix(name, "PJSIP/")] = state
	default:
		c.other[name] = state
	}
	if old == state && !always {
		return
	}
	c.emit(event{
		ami: &amiEvent{name: "DeviceStateChange", class: "call", fields: []kv{{"Device", name}, {"State", state}}},
		ari: &ari.Event{Kind: "DeviceStateChanged", Time: c.now(), Device: name, State: state},
	})
	c.updateHintsLocked(name)
}

// DeviceChange is one device state the core stored (Config.TraceDevices).
type DeviceChange struct {
	Device string `json:"device"`
	State  string `json:"state"`
	At     int64  `json:"at"` // unix nanoseconds
}

// takeTrace returns the device states stored since the last call.
func (c *core) takeTrace() []DeviceChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trace
	c.trace = nil
	return t
}

// SetDeviceState sets a device's state as a call (PJSIP/<ext>: RINGING,
// INUSE, NOT_INUSE ...) or a Stasis PUT would.
func (c *core) SetDeviceState(name, state string) error {
	if !ValidDeviceState(state) {
		return fmt.Errorf("asterisksim: unknown device state %q", state)
	}
	if strings.HasPrefix(name, "Stasis:") {
		return c.SetStasisState(name, state)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasPrefix(name, "PJSIP/") {
		if _, ok := c.cfg.Endpoints[strings.TrimPrefix(name, "PJSIP/")]; !ok {
			return fmt.Errorf("asterisksim: no endpoint for device %q", name)
		}
	} else if !strings.Contains(name, "/") && !strings.Contains(name, ":") {
		return fmt.Errorf("asterisksim: %q is no device name", name)
	}
	c.setDeviceLocked(name, state, false)
	return nil
}

// ---- ari.Backend ----

func (c *core) Info() ari.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ari.Info{SystemName: c.cfg.SystemName, EntityID: c.cfg.EntityID, Version: c.cfg.Version, Started: c.boot, Reloaded: c.boot}
}

func (c *core) Endpoints() []ari.Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ari.Endpoint
	for _, ep := range c.endpointNames() {
		out = append(out, c.endpointLocked(ep))
	}
	return out
}

func (c *core) endpointLocked(ep string) ari.Endpoint {
	st := "offline"
	if c.contacts[ep] != nil {
		st = "online"
	}
	return ari.Endpoint{Technology: "PJSIP", Resource: ep, State: st, ChannelIDs: []string{}}
}

func (c *core) DeviceState(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deviceStateLocked(name)
}

func (c *core) StasisStates() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.stasis))
	for k, v := range c.stasis {
		out[k] = v
	}
	return out
}

func (c *core) SetStasisState(name, state string) error {
	if !strings.HasPrefix(name, "Stasis:") || len(name) == len("Stasis:") {
		return fmt.Errorf("asterisksim: %q is not a Stasis: device", name)
	}
	if !ValidDeviceState(state) {
		return fmt.Errorf("asterisksim: unknown device state %q", state)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setDeviceLocked(name, state, true)
	return c.persistLocked()
}

func (c *core) DeleteStasisState(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.stasis[name]; !ok {
		return fmt.Errorf("asterisksim: %q is not set", name)
	}
	// No event, and the hints keep the last value (measured on Asterisk 22).
	delete(c.stasis, name)
	return c.persistLocked()
}

func (c *core) Subscribe(fn func(ari.Event)) func() {
	return c.hub.subscribe(func(e event) {
		if e.ari != nil {
			fn(*e.ari)
		}
	})
}

// ---- contacts ----

// Contacts lists the registered contacts, sorted by AOR.
func (c *core) Contacts() []Contact {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Contact
	for _, ep := range c.endpointNames() {
		if ct := c.contacts[ep]; ct != nil {
			out = append(out, Contact{AOR: ct.AOR, URI: ct.URI, CallID: ct.CallID, UserAgent: ct.UserAgent,
				Source: ct.Source, Expires: ct.Expires, RegServer: c.cfg.SystemName})
		}
	}
	return out
}

// addContactLocked records a new contact and raises what res_pjsip does.
// With qualify on, the device becomes available only when the first
// OPTIONS is answered (see qualify.go).
func (c *core) addContactLocked(ct *contact) {
	c.contacts[ct.AOR] = ct
	ep := c.endpointLocked(ct.AOR)
	now := c.now()
	contactEv := event{
		ami: contactStatus(ct, "NonQualified", "0"),
		ari: &ari.Event{Kind: "ContactStatusChange", Time: now, Endpoint: ep, ContactURI: ct.URI, ContactStatus: "NonQualified", AOR: ct.AOR, RoundtripUsec: "0"},
	}
	if c.cfg.QualifyFrequency > 0 {
		c.emit(contactEv)
		c.peerStatusLocked(ct.AOR, "Reachable")
		ct.nextProbe = now
		return
	}
	c.peerStatusLocked(ct.AOR, "Reachable")
	c.emit(contactEv)
	if c.pjsip[ct.AOR] == "UNAVAILABLE" {
		c.setDeviceLocked("PJSIP/"+ct.AOR, "NOT_INUSE", false)
	}
}

// peerStatusLocked raises PeerStatus (AMI) and EndpointStateChange plus
// PeerStatusChange (ARI).
func (c *core) peerStatusLocked(aor, status string) {
	ep := c.endpointLocked(aor)
	now := c.now()
	c.emit(event{
		ami: &amiEvent{name: "PeerStatus", class: "system", fields: []kv{{"ChannelType", "PJSIP"}, {"Peer", "PJSIP/" + aor}, {"PeerStatus", status}}},
		ari: &ari.Event{Kind: "EndpointStateChange", Time: now, Endpoint: ep},
	})
	c.emit(event{ari: &ari.Event{Kind: "PeerStatusChange", Time: now, Endpoint: ep, PeerStatus: status}})
}

// removeContactLocked forgets a contact (unregister or expiry).
func (c *core) removeContactLocked(aor string) {
	ct := c.contacts[aor]
	if ct == nil {
		return
	}
	delete(c.contacts, aor)
	if ct.status != "Unreachable" {
		c.peerStatusLocked(aor, "Unreachable")
	}
	c.emit(event{
		ami: contactStatus(ct, "Removed", "0"),
		ari: &ari.Event{Kind: "ContactStatusChange", Time: c.now(), Endpoint: c.endpointLocked(aor), ContactURI: ct.URI, ContactStatus: "Removed", AOR: aor, RoundtripUsec: "0"},
	})
	c.setDeviceLocked("PJSIP/"+aor, "UNAVAILABLE", false)
}

func contactStatus(ct *contact, status, rtt string) *amiEvent {
	return &amiEvent{name: "ContactStatus", class: "system", fields: []kv{
		{"URI", ct.URI}, {"ContactStatus", status}, {"AOR", ct.AOR}, {"EndpointName", ct.AOR}, {"RoundtripUsec", rtt}}}
}

// expire removes contacts whose registration ran out.
func (c *core) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, ep := range c.endpointNames() {
		if ct := c.contacts[ep]; ct != nil && !now.Before(ct.Expires) {
			c.removeContactLocked(ep)
		}
	}
}

// devicesListLocked is the DeviceStateList content: PJSIP devices, then the
// Stasis ones currently set, then any other device set.
func (c *core) devicesListLocked() []kv {
	var out []kv
	for _, ep := range c.endpointNames() {
		out = append(out, kv{"PJSIP/" + ep, c.pjsip[ep]})
	}
	for _, m := range []map[string]string{c.stasis, c.other} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, kv{k, m[k]})
		}
	}
	return out
}
