package ari

import (
	"net/http"
	"strings"
)

// callback serves one method of one resource; vars holds the path variables.
type callback func(rw *response, r *http.Request, req *request, vars map[string]string)

// node is one level of Asterisk's stasis_rest_handlers tree.
type node struct {
	segment  string
	wildcard bool // segment names a path variable
	methods  map[httpMethod]callback
	children []*node
	ws       bool // GET upgrades to the events websocket
}

func (h *Handler) tree() *node {
	leaf := func(seg string, wild bool, m map[httpMethod]callback, kids ...*node) *node {
		return &node{segment: seg, wildcard: wild, methods: m, children: kids}
	}
	events := leaf("events", false, nil)
	events.ws = true
	return leaf("ari", false, nil,
		leaf("asterisk", false, nil,
			leaf("info", false, map[httpMethod]callback{mGET: h.asteriskInfo})),
		leaf("endpoints", false, map[httpMethod]callback{mGET: h.endpointsList},
			leaf("tech", true, map[httpMethod]callback{mGET: h.endpointsByTech},
				leaf("resource", true, map[httpMethod]callback{mGET: h.endpointGet}))),
		leaf("deviceStates", false, map[httpMethod]callback{mGET: h.deviceStatesList},
			leaf("deviceName", true, map[httpMethod]callback{
				mGET: h.deviceStateGet, mPUT: h.deviceStatePut, mDELETE: h.deviceStateDelete})),
		leaf("applications", false, map[httpMethod]callback{mGET: h.applicationsList},
			leaf("applicationName", true, map[httpMethod]callback{mGET: h.applicationGet},
				leaf("subscription", false, map[httpMethod]callback{
					mPOST: h.applicationSubscribe, mDELETE: h.applicationUnsubscribe}))),
		leaf("channels", false, map[httpMethod]callback{mGET: emptyList}),
		leaf("bridges", false, map[httpMethod]callback{mGET: emptyList}),
		events,
	)
}

// invoke is ast_ari_invoke: walk the tree segment by segment (each one
// URI-decoded, so PJSIP%2F1001 is one segment), stopping at the first empty
// segment as strsep does; then dispatch on the method.
func (h *Handler) invoke(rw *response, r *http.Request, method httpMethod, uri string, req *request) {
	n := h.root
	vars := map[string]string{}
	rest := uri
	for rest != "" {
		seg, tail, _ := strings.Cut(rest, "/")
		if seg == "" {
			break
		}
		rest = tail
		seg = uriDecode(seg)
		var found, wild *node
		for _, c := range n.children {
			if c.wildcard {
				wild = c
			} else if c.segment == seg {
				found = c
				break
			}
		}
		if found == nil && wild != nil {
			found = wild
			vars[wild.segment] = seg
		}
		if found == nil {
			rw.error(http.StatusNotFound, "Resource not found")
			return
		}
		n = found
	}
	if method == mOPTIONS {
		rw.header("Allow", allow(n))
		rw.noContent()
		return
	}
	if n.ws && method == mGET {
		h.serveEvents(rw, r, req)
		return
	}
	cb := n.methods[method]
	if cb == nil {
		rw.header("Allow", allow(n))
		rw.error(http.StatusMethodNotAllowed, "Invalid method")
		return
	}
	cb(rw, r, req, vars)
}

// allow is add_allow_header: OPTIONS, then the node's methods in enum order.
func allow(n *node) string {
	s := "OPTIONS"
	for m := mGET; m < mOPTIONS; m++ {
		if n.methods[m] != nil {
			s += "," + methodNames[m]
		}
	}
	return s
}

func emptyList(rw *response, _ *http.Request, _ *request, _ map[string]string) {
	rw.json(http.StatusOK, []struct{}{})
}
