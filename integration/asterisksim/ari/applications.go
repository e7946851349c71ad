package ari

import (
	"net/http"
	"strings"
)

func (h *Handler) applicationsList(rw *response, _ *http.Request, _ *request, _ map[string]string) {
	rw.json(http.StatusOK, h.reg.list())
}

func (h *Handler) applicationGet(rw *response, _ *http.Request, _ *request, vars map[string]string) {
	a, ok := h.reg.get(vars["applicationName"])
	if !ok {
		rw.error(http.StatusNotFound, "Application not found")
		return
	}
	rw.json(http.StatusOK, a)
}

// sourceExists answers app_subscribe's find: PJSIP and any technology the
// backend has, or an existing tech/resource endpoint. The simulator has no
// channels or bridges; device names always "exist" (Asterisk subscribes to
// any name).
func (h *Handler) sourceExists(kind, id string) bool {
	switch kind {
	case "deviceState:":
		return true
	case "endpoint:":
		tech, res, hasRes := strings.Cut(id, "/")
		if !hasRes {
			return h.knownEndpointTech(tech)
		}
		_, ok := h.findEndpoint(tech, res)
		return ok
	}
	return false
}

// knownEndpointTech: a technology endpoint exists for PJSIP and for every
// technology of a configured endpoint.
func (h *Handler) knownEndpointTech(tech string) bool {
	if tech == "PJSIP" {
		return true
	}
	for _, e := range h.b.Endpoints() {
		if e.Technology == tech {
			return true
		}
	}
	return false
}

func (h *Handler) applicationSubscribe(rw *response, _ *http.Request, req *request, vars map[string]string) {
	sources, ok := req.list("eventSource")
	if !ok || len(sources) == 0 {
		rw.error(http.StatusBadRequest, "Missing parameter eventSource")
		return
	}
	a, res := h.reg.subscribe(vars["applicationName"], sources, h.sourceExists)
	h.subscriptionReply(rw, a, res, "Event source does not exist")
}

func (h *Handler) applicationUnsubscribe(rw *response, _ *http.Request, req *request, vars map[string]string) {
	sources, ok := req.list("eventSource")
	if !ok || len(sources) == 0 {
		rw.error(http.StatusBadRequest, "Missing parameter eventSource")
		return
	}
	a, res := h.reg.unsubscribe(vars["applicationName"], sources)
	h.subscriptionReply(rw, a, res, "Event source was not subscribed to")
}

func (h *Handler) subscriptionReply(rw *response, a appJSON, res subscribeResult, notFound string) {
	switch res {
	case subOK:
		rw.json(http.StatusOK, a)
	case subAppNotFound:
		rw.error(http.StatusNotFound, "Application not found")
	case subSourceNotFound:
		rw.error(http.StatusUnprocessableEntity, notFound)
	default:
		rw.error(http.StatusBadRequest, "Invalid event source URI scheme")
	}
}
