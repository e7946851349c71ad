package ari

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	ariv6 "github.com/CyCoreSystems/ari/v6"
)

// SetStasisState implements Client: PUT /deviceStates/{name}?deviceState=S.
func (n *Native) SetStasisState(ctx context.Context, name, state string) error {
	if err := CheckStasisWrite(name, state); err != nil {
		return err
	}
	return n.do(ctx, http.MethodPut, devicePath(name), url.Values{"deviceState": {state}}, nil)
}

// StasisStates implements Client: GET /deviceStates (which lists only
// Stasis: devices).
func (n *Native) StasisStates(ctx context.Context) (map[string]string, error) {
	var list []ariv6.DeviceStateData
	if err := n.do(ctx, http.MethodGet, "/deviceStates", nil, &list); err != nil {
		return nil, err
	}
	m := make(map[string]string, len(list))
	for _, d := range list {
		if strings.HasPrefix(d.Name, StasisPrefix) {
			m[d.Name] = d.State
		}
	}
	return m, nil
}

// DeviceState implements Client: GET /deviceStates/{device}, with the '/'
// of "PJSIP/1001" escaped.
func (n *Native) DeviceState(ctx context.Context, device string) (string, error) {
	if device == "" {
		return "", fmt.Errorf("ari: device state: empty device name")
	}
	var d ariv6.DeviceStateData
	if err := n.do(ctx, http.MethodGet, devicePath(device), nil, &d); err != nil {
		return "", err
	}
	return d.State, nil
}

// devicePath escapes a device name as one path segment (PJSIP%2F1001).
func devicePath(name string) string { return "/deviceStates/" + url.PathEscape(name) }

// info reads the node identity: GET /asterisk/info.
func (n *Native) info(ctx context.Context) (Node, error) {
	var info struct {
		System ariv6.SystemInfo `json:"system"`
		Config ariv6.ConfigInfo `json:"config"`
	}
	if err := n.do(ctx, http.MethodGet, "/asterisk/info", nil, &info); err != nil {
		return Node{}, err
	}
	return Node{ID: info.System.EntityID, Name: info.Config.Name}, nil
}

// do runs one REST call bounded by RequestTimeout. path must be escaped.
func (n *Native) do(ctx context.Context, method, path string, q url.Values, out any) error {
	select {
	case <-n.done:
		return ErrClosed
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	uri := n.rest.base + path
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	r, err := n.rest.call(ctx, method, uri, n.auth)
	if err != nil {
		return fmt.Errorf("ari: %s %s: %w", method, path, err)
	}
	if r.code < 200 || r.code > 299 {
		var body struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(r.body, &body)
		return &HTTPError{Method: method, Path: path, Code: r.code, Message: body.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		return fmt.Errorf("ari: %s %s: decoding reply: %w", method, path, err)
	}
	return nil
}
