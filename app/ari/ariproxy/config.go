package ariproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Config configures the ari-proxy transport.
type Config struct {
	// NATSURL is the NATS server(s) the ari-proxy servers publish on,
	// e.g. "nats://127.0.0.1:4222" (comma-separated for a cluster).
	NATSURL string `yaml:"nats_url"`
	// Application is the Stasis application the ari-proxy servers were
	// started with (--ari.application); default "doorman".
	Application string `yaml:"application"`
	// Node is the Asterisk entity id (asterisk.conf entityid) of the server
	// this client is bound to. Empty: the node is found by SystemName.
	Node string `yaml:"node"`
	// SystemName (asterisk.conf systemname) picks the node when Node is
	// empty: announced nodes are asked for their /asterisk/info.
	SystemName string `yaml:"system_name"`

	// RequestTimeout bounds one attempt of one request (ari-proxy's own
	// client uses 500 ms); Retries more attempts follow a timeout.
	RequestTimeout time.Duration `yaml:"request_timeout"` // default 500ms
	Retries        int           `yaml:"retries"`         // default 2; negative: none
	// CheckInterval: how often a connected client re-checks the node
	// (Asterisk restart) and re-makes the deviceState: subscription.
	CheckInterval time.Duration `yaml:"check_interval"` // default 5s
	// RetryInterval: how often a disconnected client retries.
	RetryInterval time.Duration `yaml:"retry_interval"` // default 1s
	// ListConcurrency bounds the parallel per-device reads of StasisStates
	// (ari-proxy lists keys only; each state is one more request).
	ListConcurrency int `yaml:"list_concurrency"` // default 32
	EventBuffer     int `yaml:"event_buffer"`     // Events() capacity; default 16384
	// ari-proxy drops events past a burst of 100 (see repair.go): when at
	// least BurstEvents arrive within BurstWindow, every known device is
	// re-read once the burst is over; also after each (re)connect and
	// every RepairInterval. BurstEvents < 0 disables repairs.
	BurstEvents    int           `yaml:"burst_events"`    // default 50
	BurstWindow    time.Duration `yaml:"burst_window"`    // default 200ms
	RepairInterval time.Duration `yaml:"repair_interval"` // default 1m; negative: only after bursts and connects
	// Prefix of every NATS subject (ari-proxy's default "ari.").
	Prefix string `yaml:"prefix"`
}

// LogValue keeps a NATS URL's credentials out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("nats_url", redactURL(c.NATSURL)),
		slog.String("application", c.Application), slog.String("node", c.Node), slog.String("system_name", c.SystemName))
}

func (c Config) withDefaults() Config {
	if c.Application == "" {
		c.Application = "doorman"
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 500 * time.Millisecond
	}
	if c.Retries == 0 {
		c.Retries = 2
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = 5 * time.Second
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = time.Second
	}
	if c.ListConcurrency <= 0 {
		c.ListConcurrency = 32
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 16384
	}
	if c.BurstEvents == 0 {
		c.BurstEvents = 50
	}
	if c.BurstWindow <= 0 {
		c.BurstWindow = 200 * time.Millisecond
	}
	if c.RepairInterval == 0 {
		c.RepairInterval = time.Minute
	}
	if c.Prefix == "" {
		c.Prefix = "ari."
	}
	return c
}

// Validate checks the config and names the bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.NATSURL == "" {
		return errors.New("ariproxy: nats_url: required")
	}
	for _, s := range strings.Split(c.NATSURL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			return fmt.Errorf("ariproxy: nats_url: not a URL: %q", redactURL(s))
		}
		if u.Scheme != "nats" && u.Scheme != "tls" {
			// ari-proxy's own client ignores an amqp:// URI and dials a
			// hard-coded RabbitMQ: only NATS is supported here.
			return fmt.Errorf("ariproxy: nats_url: scheme %q: want nats:// or tls://", u.Scheme)
		}
	}
	if c.Node == "" && c.SystemName == "" {
		return errors.New("ariproxy: node: required (the Asterisk entity id), or system_name to look it up")
	}
	// Application, node and prefix are NATS subject tokens.
	for _, f := range []struct{ name, v string }{{"application", c.Application}, {"node", c.Node}} {
		if strings.ContainsAny(f.v, ".*> \t\r\n") {
			return fmt.Errorf("ariproxy: %s: %q cannot be a NATS subject token", f.name, f.v)
		}
	}
	return nil
}

func redactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}
