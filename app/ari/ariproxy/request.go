package ariproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/CyCoreSystems/ari-proxy/v5/proxy"
	ariv5 "github.com/CyCoreSystems/ari/v5"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/asterisksupport/doorman/app/ari"
)

// Errors callers can test with errors.Is.
var (
	// ErrNoProxy: no ari-proxy serves the node (NATS "no responders").
	ErrNoProxy = errors.New("ariproxy: no ari-proxy answers for the node")
	// ErrTimeout: every attempt timed out (RequestTimeout each).
	ErrTimeout = errors.New("ariproxy: request timed out")
	// ErrNATSDown: the NATS connection is down (it keeps reconnecting).
	ErrNATSDown = errors.New("ariproxy: NATS not connected")
	// ErrNoNode: the client is not bound to a node yet.
	ErrNoNode = errors.New("ariproxy: node not found yet")
)

// RemoteError is an error ari-proxy relayed from Asterisk or its own ARI
// client, e.g. "ARI connection is down" or a non-2xx reply.
type RemoteError struct {
	Kind, Node, Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("ariproxy: %s on %s: %s", e.Kind, e.Node, e.Message)
}

// request sends one request to exactly one node (subject
// <prefix><class>.<app>.<node>, key with App and Node): ari-proxy would
// broadcast a request whose key lacks either. Each attempt waits at most
// RequestTimeout; a timeout is retried up to Retries times (a reply can be
// dropped, and every request doorman makes is idempotent).
func (c *Client) request(ctx context.Context, class, node string, req *proxy.Request) (*proxy.Response, error) {
	if node == "" {
		return nil, ErrNoNode
	}
	if !c.nc.IsConnected() {
		// nats.go would buffer the request until it reconnects: fail now.
		return nil, fmt.Errorf("%w (%s)", ErrNATSDown, req.Kind)
	}
	if req.Key == nil {
		req.Key = ariv5.NewKey("", "")
	}
	req.Key.App, req.Key.Node = c.cfg.Application, node
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("ariproxy: %s: encoding: %w", req.Kind, err)
	}
	subj := proxy.Subject(c.cfg.Prefix, class, c.cfg.Application, node)
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		msg, err := c.nc.RequestWithContext(actx, subj, data)
		cancel()
		switch {
		case err == nil:
			var resp proxy.Response
			if err := json.Unmarshal(msg.Data, &resp); err != nil {
				return nil, fmt.Errorf("ariproxy: %s on %s: decoding reply: %w", req.Kind, node, err)
			}
			if resp.Error != "" {
				return nil, &RemoteError{Kind: req.Kind, Node: node, Message: resp.Error}
			}
			return &resp, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ariproxy: %s on %s: %w", req.Kind, node, ctx.Err())
		case errors.Is(err, nats.ErrNoResponders):
			c.poke() // the proxy is gone: let the run loop confirm and report it now
			return nil, fmt.Errorf("%w %s (%s)", ErrNoProxy, node, req.Kind)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			if attempt < c.cfg.Retries {
				continue
			}
			return nil, fmt.Errorf("%w: %s on %s after %d attempts of %v", ErrTimeout, req.Kind, node, attempt+1, c.cfg.RequestTimeout)
		default:
			return nil, fmt.Errorf("ariproxy: %s on %s: %w", req.Kind, node, err)
		}
	}
}

// deviceKey names a device for ari-proxy. ari/v5's native client pastes
// the id into the URL unescaped, so "PJSIP/1001" is escaped here
// (PJSIP%2F1001), as Asterisk needs it.
func deviceKey(name string) *ariv5.Key {
	return ariv5.NewKey(ariv5.DeviceStateKey, url.PathEscape(name))
}

// SetStasisState implements ari.Client.
func (c *Client) SetStasisState(ctx context.Context, name, state string) error {
	if err := ari.CheckStasisWrite(name, state); err != nil {
		return err
	}
	_, err := c.request(ctx, "command", c.Node(), &proxy.Request{Kind: "DeviceStateUpdate", Key: deviceKey(name),
		DeviceStateUpdate: &proxy.DeviceStateUpdate{State: state}})
	switch {
	case err == nil:
		c.late.wrote(name, state, time.Now())
	case mayArriveLate(err):
		c.late.taint(name, time.Now())
	}
	return err
}

// DeviceState implements ari.Client.
func (c *Client) DeviceState(ctx context.Context, device string) (string, error) {
	if device == "" {
		return "", errors.New("ariproxy: device state: empty device name")
	}
	resp, err := c.request(ctx, "data", c.Node(), &proxy.Request{Kind: "DeviceStateData", Key: deviceKey(device)})
	if err != nil {
		return "", err
	}
	if resp.Data == nil || resp.Data.DeviceState == nil {
		return "", fmt.Errorf("ariproxy: DeviceStateData on %s: empty reply", c.Node())
	}
	return resp.Data.DeviceState.State, nil
}

// StasisStates implements ari.Client. ari-proxy's DeviceStateList returns
// names only, so each state is read with one more request, ListConcurrency
// at a time.
func (c *Client) StasisStates(ctx context.Context) (map[string]string, error) {
	node := c.Node()
	resp, err := c.request(ctx, "get", node, &proxy.Request{Kind: "DeviceStateList", Key: ariv5.NewKey(ariv5.DeviceStateKey, "")})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	out := make(map[string]string, len(resp.Keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.ListConcurrency)
	for _, k := range resp.Keys {
		if k == nil || !strings.HasPrefix(k.ID, ari.StasisPrefix) {
			continue
		}
		name := k.ID
		g.Go(func() error {
			r, err := c.request(gctx, "data", node, &proxy.Request{Kind: "DeviceStateData", Key: deviceKey(name)})
			if err != nil {
				return err
			}
			if r.Data != nil && r.Data.DeviceState != nil {
				mu.Lock()
				out[name] = r.Data.DeviceState.State
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// info reads the node's /asterisk/info through its proxy.
func (c *Client) info(ctx context.Context, node string) (*ariv5.AsteriskInfo, error) {
	resp, err := c.request(ctx, "data", node, &proxy.Request{Kind: "AsteriskInfo", Key: ariv5.NewKey("asterisk", node)})
	if err != nil {
		return nil, err
	}
	if resp.Data == nil || resp.Data.Asterisk == nil {
		return nil, fmt.Errorf("ariproxy: AsteriskInfo on %s: empty reply", node)
	}
	return resp.Data.Asterisk, nil
}

// subscribe subscribes the application to every device state of the node
// (ARI POST /applications/{app}/subscription?eventSource=deviceState:).
func (c *Client) subscribe(ctx context.Context, node string) error {
	_, err := c.request(ctx, "command", node, &proxy.Request{Kind: "ApplicationSubscribe",
		Key:                  ariv5.NewKey(ariv5.ApplicationKey, c.cfg.Application),
		ApplicationSubscribe: &proxy.ApplicationSubscribe{EventSource: "deviceState:"}})
	return err
}

// resolve finds the node whose systemname is cfg.SystemName among the
// nodes that answer a ping within RequestTimeout.
func (c *Client) resolve(ctx context.Context) (string, error) {
	nodes, err := discover(ctx, c.nc, c.cfg.Prefix, c.cfg.Application, 2*c.cfg.RequestTimeout)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		info, err := c.info(ctx, n)
		if err == nil && info.ConfigInfo.Name == c.cfg.SystemName {
			c.log.Info("ari-proxy: found node by system name", "node", n, "system", c.cfg.SystemName)
			return n, nil
		}
	}
	return "", fmt.Errorf("%w: no announced node has system name %q (%d announced)", ErrNoNode, c.cfg.SystemName, len(nodes))
}

// discover pings every ari-proxy and collects the nodes of app that
// announce themselves within wait. A proxy whose Asterisk is down stays
// silent.
func discover(ctx context.Context, nc *nats.Conn, prefix, app string, wait time.Duration) ([]string, error) {
	ch := make(chan string, 64)
	sub, err := nc.Subscribe(proxy.AnnouncementSubject(prefix), func(m *nats.Msg) {
		var a proxy.Announcement
		if json.Unmarshal(m.Data, &a) == nil && a.Application == app && a.Node != "" {
			select {
			case ch <- a.Node:
			default:
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ariproxy: discover: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish(proxy.PingSubject(prefix), []byte("{}")); err != nil {
		return nil, fmt.Errorf("ariproxy: discover: ping: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-t.C:
			return out, nil
		case n := <-ch:
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
}

// Nodes lists the entity ids of the Asterisk servers whose ari-proxy for
// app answers a ping within wait (0: 1 s), for a central instance that
// starts one Client per node.
func Nodes(ctx context.Context, natsURL, app string, wait time.Duration) ([]ari.Node, error) {
	cfg := Config{NATSURL: natsURL, Application: app, Node: "x"}.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if wait <= 0 {
		wait = time.Second
	}
	nc, err := nats.Connect(natsURL, nats.Name("doorman"))
	if err != nil {
		return nil, fmt.Errorf("ariproxy: NATS %s: %w", redactURL(natsURL), err)
	}
	defer nc.Close()
	ids, err := discover(ctx, nc, cfg.Prefix, cfg.Application, wait)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, nc: nc}
	out := make([]ari.Node, 0, len(ids))
	for _, id := range ids {
		n := ari.Node{ID: id}
		if info, err := c.info(ctx, id); err == nil {
			n.Name = info.ConfigInfo.Name
		}
		out = append(out, n)
	}
	return out, nil
}
