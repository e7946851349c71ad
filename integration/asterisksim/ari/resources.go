package ari

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"
)

// timeLayout is ast_json_timeval's format, e.g. 2026-11-25T11:26:36.022+0000.
const timeLayout = "2006-01-02T15:04:05.000-0700"

func stamp(t time.Time) string { return t.UTC().Format(timeLayout) }

type infoBuild struct {
	OS      string `json:"os"`
	Kernel  string `json:"kernel"`
	Machine string `json:"machine"`
	Options string `json:"options"`
	Date    string `json:"date"`
	User    string `json:"user"`
}

type infoSystem struct {
	Version  string `json:"version"`
	EntityID string `json:"entity_id"`
}

type infoConfig struct {
	Name            string `json:"name"`
	DefaultLanguage string `json:"default_language"`
	SetID           struct {
		User  string `json:"user"`
		Group string `json:"group"`
	} `json:"setid"`
}

type infoStatus struct {
	StartupTime    string `json:"startup_time"`
	LastReloadTime string `json:"last_reload_time"`
}

type asteriskInfo struct {
	Build  *infoBuild  `json:"build,omitempty"`
	System *infoSystem `json:"system,omitempty"`
	Config *infoConfig `json:"config,omitempty"`
	Status *infoStatus `json:"status,omitempty"`
}

// asteriskInfo is GET /asterisk/info[?only=build,system,config,status]. The
// build section is the captured Asterisk's; the rest comes from the backend.
func (h *Handler) asteriskInfo(rw *response, _ *http.Request, req *request, _ map[string]string) {
	in := h.b.Info()
	show := map[string]bool{"build": true, "system": true, "config": true, "status": true}
	if only, ok := req.list("only"); ok {
		show = map[string]bool{}
		for _, s := range only {
			show[strings.ToLower(s)] = true // unknown sections are only logged by Asterisk
		}
	}
	var out asteriskInfo
	if show["build"] {
		out.Build = &infoBuild{OS: "Linux", Kernel: "6.18.44-fc-v657", Machine: "x86_64",
			Options: "OPTIONAL_API", Date: "2026-11-25 11:12:17 UTC", User: "root"}
	}
	if show["system"] {
		out.System = &infoSystem{Version: in.Version, EntityID: in.EntityID}
	}
	if show["config"] {
		out.Config = &infoConfig{Name: in.SystemName, DefaultLanguage: "en"}
	}
	if show["status"] {
		out.Status = &infoStatus{StartupTime: stamp(in.Started), LastReloadTime: stamp(in.Reloaded)}
	}
	rw.json(http.StatusOK, out)
}

// endpointJSON is ARI's Endpoint model, in Asterisk's key order.
type endpointJSON struct {
	Technology string   `json:"technology"`
	Resource   string   `json:"resource"`
	State      string   `json:"state"`
	ChannelIDs []string `json:"channel_ids"`
}

func toEndpointJSON(e Endpoint) endpointJSON {
	ids := e.ChannelIDs
	if ids == nil {
		ids = []string{}
	}
	return endpointJSON{Technology: e.Technology, Resource: e.Resource, State: e.State, ChannelIDs: ids}
}

// endpoints returns the backend's endpoints in a stable order.
func (h *Handler) endpoints() []Endpoint {
	eps := slices.Clone(h.b.Endpoints())
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Technology, b.Technology), cmp.Compare(a.Resource, b.Resource))
	})
	return eps
}

func (h *Handler) endpointsList(rw *response, _ *http.Request, _ *request, _ map[string]string) {
	out := []endpointJSON{}
	for _, e := range h.endpoints() {
		out = append(out, toEndpointJSON(e))
	}
	rw.json(http.StatusOK, out)
}

// knownTech tells whether a channel technology is registered. PJSIP and
// Local always are; any technology the backend reports is too.
func (h *Handler) knownTech(tech string) bool {
	if strings.EqualFold(tech, "PJSIP") || strings.EqualFold(tech, "Local") {
		return true
	}
	for _, e := range h.b.Endpoints() {
		if strings.EqualFold(e.Technology, tech) {
			return true
		}
	}
	return false
}

func (h *Handler) endpointsByTech(rw *response, _ *http.Request, _ *request, vars map[string]string) {
	tech := vars["tech"]
	if !h.knownTech(tech) {
		rw.error(http.StatusNotFound, "No Endpoints found - invalid tech "+tech)
		return
	}
	out := []endpointJSON{}
	for _, e := range h.endpoints() {
		if strings.EqualFold(e.Technology, tech) {
			out = append(out, toEndpointJSON(e))
		}
	}
	rw.json(http.StatusOK, out)
}

func (h *Handler) findEndpoint(tech, resource string) (Endpoint, bool) {
	for _, e := range h.b.Endpoints() {
		if e.Technology == tech && e.Resource == resource {
			return e, true
		}
	}
	return Endpoint{}, false
}

func (h *Handler) endpointGet(rw *response, _ *http.Request, _ *request, vars map[string]string) {
	e, ok := h.findEndpoint(vars["tech"], vars["resource"])
	if !ok {
		rw.error(http.StatusNotFound, "Endpoint not found")
		return
	}
	rw.json(http.StatusOK, toEndpointJSON(e))
}
