package ari

import (
	"net/http"
	"sort"
	"strings"
)

// stasisPrefix is the scheme of the device states ARI controls.
const stasisPrefix = "Stasis:"

// deviceStateJSON is ARI's DeviceState model.
type deviceStateJSON struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// devstateVal is ast_devstate_val: a case-insensitive name to state. Anything
// else, UNKNOWN included, is UNKNOWN and cannot be set.
func devstateVal(v string) (string, bool) {
	switch s := strings.ToUpper(v); s {
	case "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD":
		return s, true
	}
	return "UNKNOWN", false
}

// stasisName splits a controlled device name; the scheme is matched without
// case, as strncasecmp in res_stasis_device_state.c.
func stasisName(name string) (full string, controlled bool) {
	if len(name) < len(stasisPrefix) || !strings.EqualFold(name[:len(stasisPrefix)], stasisPrefix) {
		return "", false
	}
	return stasisPrefix + name[len(stasisPrefix):], true
}

// deviceStatesList lists only the Stasis: states (they come from astdb),
// sorted by name as astdb keys are.
func (h *Handler) deviceStatesList(rw *response, _ *http.Request, _ *request, _ map[string]string) {
	states := h.b.StasisStates()
	out := make([]deviceStateJSON, 0, len(states))
	for name, st := range states {
		if !strings.HasPrefix(name, stasisPrefix) {
			name = stasisPrefix + name
		}
		out = append(out, deviceStateJSON{name, st})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	rw.json(http.StatusOK, out)
}

// deviceStateGet answers for any name: a never-set Stasis: state is UNKNOWN,
// a name that is no device (PJSIP:1001) INVALID.
func (h *Handler) deviceStateGet(rw *response, _ *http.Request, _ *request, vars map[string]string) {
	name := vars["deviceName"]
	rw.json(http.StatusOK, deviceStateJSON{name, h.b.DeviceState(name)})
}

func (h *Handler) deviceStatePut(rw *response, _ *http.Request, req *request, vars map[string]string) {
	full, ok := stasisName(vars["deviceName"])
	if !ok {
		rw.error(http.StatusConflict, "Uncontrolled device specified")
		return
	}
	if full == stasisPrefix {
		rw.error(http.StatusNotFound, "Device name is missing")
		return
	}
	value, _ := req.param("deviceState")
	state, ok := devstateVal(value)
	if !ok {
		rw.error(http.StatusInternalServerError, "Unknown device")
		return
	}
	if err := h.b.SetStasisState(full, state); err != nil {
		h.log.Error("ari: set device state", "device", full, "err", err)
		rw.error(http.StatusInternalServerError, "Internal Server Error")
		return
	}
	rw.noContent()
}

// deviceStateDelete removes a Stasis: state; deleting one never set is still
// a 204, as in Asterisk.
func (h *Handler) deviceStateDelete(rw *response, _ *http.Request, _ *request, vars map[string]string) {
	full, ok := stasisName(vars["deviceName"])
	if !ok {
		rw.error(http.StatusConflict, "Uncontrolled device specified")
		return
	}
	if full == stasisPrefix {
		rw.error(http.StatusNotFound, "Device name is missing")
		return
	}
	if err := h.b.DeleteStasisState(full); err != nil {
		h.log.Warn("ari: delete device state", "device", full, "err", err)
	}
	rw.noContent()
}
