package ari

import (
	"slices"
	"sort"
	"strings"
	"sync"
)

// The "all" subscriptions as stasis_app_to_json shows them.
const (
	channelAll  = "__AST_CHANNEL_ALL_TOPIC"
	bridgeAll   = "__AST_BRIDGE_ALL_TOPIC"
	endpointAll = "__AST_ENDPOINT_ALL_TOPIC"
	deviceAll   = "__AST_DEVICE_STATE_ALL_TOPIC"
)

// app is one Stasis application. Subscriptions belong to the app, not to its
// websocket: they outlive a disconnect, as in res_stasis. An app with no
// websocket and no channel/bridge/endpoint subscription is gone from the
// registry (Asterisk's cleanup), but its device-state subscriptions are kept
// by name and come back with it, as res_stasis_device_state keeps them.
type app struct {
	name      string
	conn      *wsConn // nil while no websocket serves the app
	channels  []string
	bridges   []string
	endpoints []string
	devices   []string
}

func (a *app) visible() bool {
	return a.conn != nil || len(a.channels)+len(a.bridges)+len(a.endpoints) > 0
}

// appJSON is ARI's Application model.
type appJSON struct {
	Name             string   `json:"name"`
	ChannelIDs       []string `json:"channel_ids"`
	BridgeIDs        []string `json:"bridge_ids"`
	EndpointIDs      []string `json:"endpoint_ids"`
	DeviceNames      []string `json:"device_names"`
	EventsAllowed    []any    `json:"events_allowed"`
	EventsDisallowed []any    `json:"events_disallowed"`
}

func (a *app) json() appJSON {
	c := func(s []string) []string { return append([]string{}, s...) }
	return appJSON{Name: a.name, ChannelIDs: c(a.channels), BridgeIDs: c(a.bridges),
		EndpointIDs: c(a.endpoints), DeviceNames: c(a.devices),
		EventsAllowed: []any{}, EventsDisallowed: []any{}}
}

// registry holds every app of one simulated Asterisk.
type registry struct {
	mu   sync.Mutex
	apps map[string]*app
	live map[*wsConn]bool // every open websocket, replaced ones included
}

func newRegistry() *registry {
	return &registry{apps: map[string]*app{}, live: map[*wsConn]bool{}}
}

// find returns a registered (visible) app. Callers hold mu.
func (g *registry) find(name string) *app {
	if a := g.apps[name]; a != nil && a.visible() {
		return a
	}
	return nil
}

// register attaches c to the app name, creating it (with every "all"
// subscription if subscribeAll) when it is not registered. An existing app
// keeps its subscriptions and model; its previous websocket is returned so
// the caller can tell it ApplicationReplaced.
func (g *registry) register(name string, c *wsConn, subscribeAll bool) (replaced *wsConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live[c] = true
	if a := g.find(name); a != nil {
		replaced, a.conn = a.conn, c
		if replaced == c {
			replaced = nil
		}
		return replaced
	}
	a := g.apps[name]
	if a == nil {
		a = &app{name: name}
		g.apps[name] = a
	}
	a.conn = c
	if subscribeAll {
		a.channels = addOnce(a.channels, channelAll)
		a.bridges = addOnce(a.bridges, bridgeAll)
		a.endpoints = addOnce(a.endpoints, endpointAll)
		a.devices = slices.Insert(removeItem(a.devices, deviceAll), 0, deviceAll)
	}
	return nil
}

// unregister detaches c from the apps it still serves.
func (g *registry) unregister(c *wsConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.live, c)
	for _, name := range c.apps {
		if a := g.apps[name]; a != nil && a.conn == c {
			a.conn = nil
		}
	}
}

// conns returns every open websocket.
func (g *registry) conns() []*wsConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*wsConn, 0, len(g.live))
	for c := range g.live {
		out = append(out, c)
	}
	return out
}

// list returns the registered apps sorted by name.
func (g *registry) list() []appJSON {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []appJSON{}
	for _, a := range g.apps {
		if a.visible() {
			out = append(out, a.json())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (g *registry) get(name string) (appJSON, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.find(name); a != nil {
		return a.json(), true
	}
	return appJSON{}, false
}

// subscribeResult mirrors enum stasis_app_subscribe_res.
type subscribeResult int

const (
	subOK subscribeResult = iota
	subAppNotFound
	subSourceNotFound
	subBadScheme
)

// sourceKind splits an event source URI by its (case-sensitive) scheme.
func sourceKind(uri string) (kind, id string, ok bool) {
	for _, s := range []string{"channel:", "bridge:", "endpoint:", "deviceState:"} {
		if strings.HasPrefix(uri, s) {
			return s, uri[len(s):], true
		}
	}
	return "", "", false
}

// exists tells whether a specific event source object exists; the handler
// answers it from the backend (endpoints) and the simulator has no channels
// or bridges.
type existsFunc func(kind, id string) bool

// subscribe is app_handle_subscriptions with app_subscribe: sources are
// applied in order, and the first failure stops (earlier ones stay).
func (g *registry) subscribe(name string, sources []string, exists existsFunc) (appJSON, subscribeResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.find(name)
	if a == nil {
		return appJSON{}, subAppNotFound
	}
	for _, uri := range sources {
		kind, id, ok := sourceKind(uri)
		if !ok {
			return appJSON{}, subBadScheme
		}
		if id != "" && !exists(kind, id) {
			return appJSON{}, subSourceNotFound
		}
		list, all := a.listFor(kind)
		if id == "" {
			id = all
		}
		// A specific subscription under an existing "all" one is a no-op.
		if id != all && slices.Contains(*list, all) {
			continue
		}
		*list = addOnce(*list, id)
	}
	return a.json(), subOK
}

// unsubscribe is app_unsubscribe: a source not subscribed to is an error
// (device states count as subscribed under "all").
func (g *registry) unsubscribe(name string, sources []string) (appJSON, subscribeResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.find(name)
	if a == nil {
		return appJSON{}, subAppNotFound
	}
	for _, uri := range sources {
		kind, id, ok := sourceKind(uri)
		if !ok {
			return appJSON{}, subBadScheme
		}
		list, all := a.listFor(kind)
		if id == "" {
			id = all
		}
		switch {
		case slices.Contains(*list, id):
			*list = removeItem(*list, id)
		case kind == "deviceState:" && slices.Contains(*list, all):
			// is_subscribed_device_state is true under "all"; removing the
			// specific one finds nothing.
		default:
			return appJSON{}, subSourceNotFound
		}
	}
	return a.json(), subOK
}

func (a *app) listFor(kind string) (*[]string, string) {
	switch kind {
	case "channel:":
		return &a.channels, channelAll
	case "bridge:":
		return &a.bridges, bridgeAll
	case "endpoint:":
		return &a.endpoints, endpointAll
	default:
		return &a.devices, deviceAll
	}
}

// wants tells whether app a receives e. The "all endpoints" route of a
// subscribeAll app forwards peer and contact status but not endpoint state
// changes (EndpointStateChange needs a subscription to the technology or to
// the endpoint itself), as the captures show.
func (a *app) wants(e Event) bool {
	switch e.Kind {
	case "DeviceStateChanged":
		return slices.Contains(a.devices, deviceAll) || slices.Contains(a.devices, e.Device)
	case "EndpointStateChange", "PeerStatusChange", "ContactStatusChange":
		tech := e.Endpoint.Technology
		id := tech + "/" + e.Endpoint.Resource
		if slices.Contains(a.endpoints, tech) || slices.Contains(a.endpoints, id) {
			return true
		}
		return e.Kind != "EndpointStateChange" && slices.Contains(a.endpoints, endpointAll)
	}
	return false
}

func addOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func removeItem(s []string, v string) []string {
	return slices.DeleteFunc(s, func(x string) bool { return x == v })
}
