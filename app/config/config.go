// Package config owns doorman.yaml: loading (defaults first, then the file,
// then validation), secrets read from files, and printing with secrets
// redacted. Each job's section is that job's own Config type.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/blf"
	"github.com/asterisksupport/doorman/app/finder"
	"github.com/asterisksupport/doorman/app/intrusion"
	"github.com/asterisksupport/doorman/app/state/redisstore"
)

// Server identifies this server in the cluster.
type Server struct {
	// Name must equal Asterisk's systemname (the reg_server of its contacts).
	Name string `yaml:"name"`
	// SIPAddr is where the other servers send inter-server calls (ip:port).
	SIPAddr string `yaml:"sip_addr"`
	// Cluster lists the addresses of every server of the cluster; they are
	// never banned and are the only sources the inter-server context accepts.
	Cluster []string `yaml:"cluster"`
	// HeartbeatTTL: a server silent for this long stops being a location and
	// stops contributing lamp states.
	HeartbeatTTL time.Duration `yaml:"heartbeat_ttl"`
}

// AMI is the manager connection to the local Asterisk.
type AMI struct {
	Addr       string `yaml:"addr"`
	Username   string `yaml:"username"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	MD5        bool   `yaml:"md5"`
}

// ARI is the connection to the local Asterisk's ARI (Busy Lamp Monitor).
type ARI struct {
	Transport        string `yaml:"transport"` // native | ari-proxy
	NATSURL          string `yaml:"nats_url"`
	PasswordFile     string `yaml:"password_file"`
	ari.NativeConfig `yaml:",inline"`
}

// Store selects Redis (store.redis.addrs set) or the embedded store.
type Store struct {
	Redis             redisstore.Config `yaml:"redis"`
	RedisPasswordFile string            `yaml:"redis_password_file"`
	EmbeddedPath      string            `yaml:"embedded_path"`
}

// Firewall selects and configures the kernel backend.
type Firewall struct {
	Backend string `yaml:"backend"` // nftables | ipset | none
	Table   string `yaml:"table"`   // nftables table / ipset set name prefix
	MaxElem int    `yaml:"max_elements"`
}

// API is the agent's HTTP API.
type API struct {
	Listen    string `yaml:"listen"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Jobs switches each job on or off.
type Jobs struct {
	Intrusion bool `yaml:"intrusion"`
	Finder    bool `yaml:"finder"`
	BLF       bool `yaml:"blf"`
}

// Config is doorman.yaml.
type Config struct {
	Server   Server   `yaml:"server"`
	Jobs     Jobs     `yaml:"jobs"`
	AMI      AMI      `yaml:"ami"`
	ARI      ARI      `yaml:"ari"`
	Store    Store    `yaml:"store"`
	Firewall Firewall `yaml:"firewall"`
	API      API      `yaml:"api"`
	LogLevel string   `yaml:"log_level"` // debug, info, warn, error

	Intrusion intrusion.Config `yaml:"intrusion"`
	Finder    finder.Config    `yaml:"finder"`
	BLF       blf.Config       `yaml:"blf"`
}

// Default returns the documented defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Server: Server{Name: host, HeartbeatTTL: 15 * time.Second},
		Jobs:   Jobs{Intrusion: true, Finder: true, BLF: true},
		AMI:    AMI{Addr: "127.0.0.1:5038", Username: "doorman"},
		ARI: ARI{Transport: "native", NATSURL: "nats://127.0.0.1:4222",
			NativeConfig: ari.NativeConfig{URL: "http://127.0.0.1:8088/ari", Username: "doorman", Application: "doorman"}},
		Store:    Store{EmbeddedPath: "/var/lib/doorman/state.db"},
		Firewall: Firewall{Backend: "nftables", Table: "doorman", MaxElem: 1 << 20},
		API:      API{Listen: "127.0.0.1:9485"},
		LogLevel: "info",

		Intrusion: intrusion.DefaultConfig(),
		Finder:    finder.DefaultConfig(),
		BLF:       blf.DefaultConfig(),
	}
}

// Load reads path over the defaults, reads secret files and validates.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return Parse(b)
}

// Parse is Load for bytes. Unknown keys are errors: a typo must not silently
// fall back to a default.
func Parse(b []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // empty file: all defaults
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.readSecrets(); err != nil {
		return Config{}, err
	}
	c.derive()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) readSecrets() error {
	for _, s := range []struct {
		name, file string
		dst        *string
	}{
		{"ami.secret_file", c.AMI.SecretFile, &c.AMI.Secret},
		{"ari.password_file", c.ARI.PasswordFile, &c.ARI.Password},
		{"store.redis_password_file", c.Store.RedisPasswordFile, &c.Store.Redis.Password},
		{"api.token_file", c.API.TokenFile, &c.API.Token},
	} {
		if s.file == "" {
			continue
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.name, err)
		}
		*s.dst = strings.TrimSpace(string(b))
	}
	return nil
}

// derive fills the jobs' copies of the server section, so each fact is
// written once in doorman.yaml.
func (c *Config) derive() {
	if c.Finder.Server == "" {
		c.Finder.Server = c.Server.Name
	}
	if c.Finder.SIPAddr == "" {
		c.Finder.SIPAddr = c.Server.SIPAddr
	}
	if c.Server.HeartbeatTTL > 0 {
		c.Finder.HeartbeatTTL = c.Server.HeartbeatTTL
		c.BLF.HeartbeatTTL = c.Server.HeartbeatTTL
		if c.BLF.HeartbeatInterval >= c.Server.HeartbeatTTL {
			c.BLF.HeartbeatInterval = c.Server.HeartbeatTTL / 3
		}
	}
	// The cluster's own servers are never banned.
	c.Intrusion.NeverBan = append(c.Intrusion.NeverBan, c.ClusterPrefixes()...)
}

// Validate checks everything that can be checked before running.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Server.Name == "" {
		bad("server.name", "required (Asterisk's systemname)")
	}
	if c.Server.HeartbeatTTL <= 0 {
		bad("server.heartbeat_ttl", "must be positive, got %s", c.Server.HeartbeatTTL)
	}
	for _, a := range c.Server.Cluster {
		if _, err := ParsePrefix(a); err != nil {
			bad("server.cluster", "%v", err)
		}
	}
	if (c.Jobs.Intrusion || c.Jobs.Finder || c.Jobs.BLF) && c.AMI.Addr == "" {
		bad("ami.addr", "required")
	}
	switch c.ARI.Transport {
	case "native", "ari-proxy":
	default:
		bad("ari.transport", "must be native or ari-proxy, got %q", c.ARI.Transport)
	}
	switch c.Firewall.Backend {
	case "nftables", "ipset", "none":
	default:
		bad("firewall.backend", "must be nftables, ipset or none, got %q", c.Firewall.Backend)
	}
	if c.API.Listen != "" && c.API.Token == "" {
		bad("api.token", "required when api.listen is set (or set api.token_file)")
	}
	if len(c.Store.Redis.Addrs) > 0 {
		if err := c.Store.Redis.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: store.redis: %w", err))
		}
	}
	if c.Jobs.Intrusion {
		if err := c.Intrusion.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	if c.Jobs.Finder {
		if err := c.Finder.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	if c.Jobs.BLF {
		if err := c.BLF.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
		if c.ARI.Transport == "native" {
			if err := c.ARI.NativeConfig.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("config: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// ClusterPrefixes returns server.cluster as prefixes (validated by Load).
func (c *Config) ClusterPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Server.Cluster {
		if p, err := ParsePrefix(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParsePrefix accepts an address or a CIDR prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Redacted returns c as YAML with every secret replaced, for `doorman config print`.
func (c Config) Redacted() ([]byte, error) {
	for _, s := range []*string{&c.AMI.Secret, &c.ARI.Password, &c.Store.Redis.Password, &c.Store.Redis.SentinelPassword, &c.API.Token} {
		if *s != "" {
			*s = "REDACTED"
		}
	}
	return yaml.Marshal(c)
}
