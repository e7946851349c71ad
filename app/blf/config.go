package blf

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asterisksupport/doorman/app/ari"
)

// Config is the blf section of doorman.yaml.
type Config struct {
	// Devices selects the real devices whose states are shared (matched
	// against the full name, e.g. "PJSIP/1001") and captures the parts the
	// two templates use. Stasis: devices are never shared, whatever this says.
	Devices string `yaml:"devices"`
	// Stasis is the custom device state written on the other servers
	// (regexp.Expand template), e.g. "Stasis:$2".
	Stasis string `yaml:"stasis"`
	// Extension names the dialplan extension for `doorman lamps hints`.
	Extension string `yaml:"extension"`
	// Workers write Stasis: states in parallel (one name always goes to the
	// same worker, so writes to one name stay in order), and publish bursts
	// of local changes to the store in parallel (one device at most once
	// per burst).
	Workers int `yaml:"workers"`
	// HeartbeatInterval: how often this server says it is alive, and how
	// often the live servers are re-read.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// HeartbeatTTL: a server silent for this long stops contributing; its
	// phones turn UNAVAILABLE elsewhere within HeartbeatTTL+HeartbeatInterval.
	HeartbeatTTL time.Duration `yaml:"heartbeat_ttl"`
	// RetryInterval: failed writes, snapshots and reads are retried this often.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// ReconcileInterval: every so often all Stasis: states are listed and
	// corrected, and this server's devices are stored again from a fresh
	// snapshot (0 disables; reconnects and store resyncs always do it).
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// StoreTimeout bounds each call to the shared store.
	StoreTimeout time.Duration `yaml:"store_timeout"`
}

// DefaultConfig returns the documented defaults: PJSIP/1001, SIP/1001 and
// IAX2/1001 all map to Stasis:1001 and extension 1001.
func DefaultConfig() Config {
	return Config{
		Devices:           `^(PJSIP|SIP|IAX2)/([^/&]+)$`,
		Stasis:            "Stasis:$2",
		Extension:         "$2",
		Workers:           8,
		HeartbeatInterval: 5 * time.Second,
		HeartbeatTTL:      15 * time.Second,
		RetryInterval:     2 * time.Second,
		ReconcileInterval: 5 * time.Minute,
		StoreTimeout:      5 * time.Second,
	}
}

// Validate checks the config and names the bad field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("blf: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if _, err := NewMapping(c.Devices, c.Stasis, c.Extension); err != nil {
		errs = append(errs, err)
	}
	if c.Workers < 1 || c.Workers > 256 {
		bad("workers", "must be 1..256, got %d", c.Workers)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"heartbeat_interval", c.HeartbeatInterval}, {"heartbeat_ttl", c.HeartbeatTTL},
		{"retry_interval", c.RetryInterval}, {"store_timeout", c.StoreTimeout}} {
		if d.v <= 0 {
			bad(d.name, "must be positive, got %s", d.v)
		}
	}
	if c.HeartbeatTTL > 0 && c.HeartbeatTTL <= c.HeartbeatInterval {
		bad("heartbeat_ttl", "must be longer than heartbeat_interval (%s), got %s", c.HeartbeatInterval, c.HeartbeatTTL)
	}
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval", "must not be negative, got %s", c.ReconcileInterval)
	}
	return errors.Join(errs...)
}

// Mapping turns a real device name into its Stasis: name and extension.
// It is safe for concurrent use and caches results.
type Mapping struct {
	re            *regexp.Regexp
	stasis, exten string
	cache         sync.Map // device -> mapped
	cached        atomic.Int64
}

type mapped struct {
	stasis, exten string
	ok            bool
}

// maxCached bounds the cache; beyond it results are computed each time.
const maxCached = 1 << 17

// NewMapping compiles the devices regexp and checks the templates.
func NewMapping(devices, stasis, exten string) (*Mapping, error) {
	re, err := regexp.Compile(devices)
	if err != nil {
		return nil, fmt.Errorf("blf: devices: %w", err)
	}
	if !strings.HasPrefix(stasis, ari.StasisPrefix) || len(stasis) == len(ari.StasisPrefix) {
		return nil, fmt.Errorf("blf: stasis: template must start with %q and name something, got %q", ari.StasisPrefix, stasis)
	}
	if exten == "" {
		return nil, errors.New("blf: extension: template required")
	}
	if re.NumSubexp() == 0 && !strings.Contains(stasis, "$") {
		return nil, fmt.Errorf("blf: stasis: template %q uses no capture group: every device would map to one name", stasis)
	}
	return &Mapping{re: re, stasis: stasis, exten: exten}, nil
}

// Map returns the Stasis: name and extension for device; ok is false for
// Stasis: devices (never republished: the echo would loop) and for names
// the regexp does not match or that expand to nothing.
func (m *Mapping) Map(device string) (stasis, exten string, ok bool) {
	if v, hit := m.cache.Load(device); hit {
		r := v.(mapped)
		return r.stasis, r.exten, r.ok
	}
	r := m.compute(device)
	if m.cached.Load() < maxCached {
		if _, loaded := m.cache.LoadOrStore(device, r); !loaded {
			m.cached.Add(1)
		}
	}
	return r.stasis, r.exten, r.ok
}

func (m *Mapping) compute(device string) mapped {
	if strings.HasPrefix(device, ari.StasisPrefix) {
		return mapped{}
	}
	idx := m.re.FindStringSubmatchIndex(device)
	if idx == nil {
		return mapped{}
	}
	s := string(m.re.ExpandString(nil, m.stasis, device, idx))
	e := string(m.re.ExpandString(nil, m.exten, device, idx))
	if len(s) <= len(ari.StasisPrefix) || e == "" {
		return mapped{}
	}
	return mapped{stasis: s, exten: e, ok: true}
}
