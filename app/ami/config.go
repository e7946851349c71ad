package ami

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config says where and how the client connects. Zero durations and limits
// take the defaults below.
type Config struct {
	Addr     string // host:port of the manager interface, e.g. 127.0.0.1:5038
	Username string
	Secret   string // never logged: Config's String and LogValue redact it
	UseMD5   bool   // Challenge/MD5 login instead of a plaintext Secret
	// Events is the Login's Events value: "on" (default), "off", or an
	// event-class mask such as "security,system".
	Events string

	DialTimeout  time.Duration // default 5 s
	LoginTimeout time.Duration // banner + login; default 10 s (Asterisk delays a failure by 1 s)
	WriteTimeout time.Duration // one action write; default 10 s
	PingInterval time.Duration // keepalive Ping period; default 15 s; negative disables
	PingTimeout  time.Duration // a Ping without reply by then drops the connection; default 10 s
	BackoffMin   time.Duration // first reconnect delay; default 500 ms
	BackoffMax   time.Duration // reconnect delay cap; default 10 s
	// Coalesce, when positive, batches the reading of a busy stream: once
	// reads come less than 2×Coalesce apart and the socket was drained, the
	// next read waits until Coalesce after the previous one, so one
	// wake-up reads every event of the interval instead of one wake-up
	// per event. It delays events by up to Coalesce; default 0 (off).
	Coalesce time.Duration

	Limits ParserLimits
}

// Defaults.
const (
	DefaultDialTimeout  = 5 * time.Second
	DefaultLoginTimeout = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultPingInterval = 15 * time.Second
	DefaultPingTimeout  = 10 * time.Second
	DefaultBackoffMin   = 500 * time.Millisecond
	DefaultBackoffMax   = 10 * time.Second
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Events == "" {
		c.Events = "on"
	}
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.LoginTimeout, DefaultLoginTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.PingTimeout, DefaultPingTimeout)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	return c
}

// Validate reports the first missing or bad setting.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("ami: config: addr is empty")
	case c.Username == "":
		return errors.New("ami: config: username is empty")
	case c.DialTimeout < 0 || c.LoginTimeout < 0 || c.WriteTimeout < 0 || c.PingTimeout < 0:
		return errors.New("ami: config: negative timeout")
	case c.BackoffMin < 0 || c.BackoffMax < 0:
		return errors.New("ami: config: negative backoff")
	case c.Coalesce < 0:
		return errors.New("ami: config: negative coalesce")
	}
	for _, s := range []string{c.Username, c.Secret, c.Events} {
		if err := checkValue(s); err != nil {
			return fmt.Errorf("ami: config: username, secret or events: %w", err)
		}
	}
	return nil
}

func (c Config) redacted() string {
	if c.Secret == "" {
		return ""
	}
	return "[redacted]"
}

// String shows the config with the secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("ami.Config{Addr:%q Username:%q Secret:%s UseMD5:%t Events:%q}",
		c.Addr, c.Username, c.redacted(), c.UseMD5, c.Events)
}

// GoString keeps %#v from printing the secret.
func (c Config) GoString() string { return c.String() }

// LogValue logs the config with the secret redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("username", c.Username),
		slog.String("secret", c.redacted()),
		slog.Bool("md5", c.UseMD5),
		slog.String("events", c.Events),
	)
}
