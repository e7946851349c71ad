package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config says how to reach Redis. The zero value of every optional field
// means its default.
type Config struct {
	// Addrs: one host:port for a single server; several for Redis Cluster;
	// the Sentinel addresses when MasterName is set.
	Addrs []string `yaml:"addrs"`
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string `yaml:"master_name"`
	// Username and Password authenticate (AUTH / ACL). Never logged.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// SentinelUsername and SentinelPassword authenticate to the Sentinels.
	SentinelUsername string `yaml:"sentinel_username"`
	SentinelPassword string `yaml:"sentinel_password"`
	// DB is the database number (not with Cluster).
	DB  int       `yaml:"db"`
	TLS TLSConfig `yaml:"tls"`
	// KeyPrefix names doorman's keys and channels (default "doorman:").
	// Keys are written "{doorman}:..." so that every key hashes to one
	// Cluster slot and multi-key scripts work there too.
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout (default 2s), ReadTimeout and WriteTimeout (default 1s)
	// bound every call, so a dead Redis gives errors, not hangs.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// PoolSize is the connection pool size (default: go-redis's, 10 per CPU).
	PoolSize int `yaml:"pool_size"`
	// WatchPing is how often an idle watch subscription is pinged to detect
	// a dead connection (default 2s); the subscription is remade after a
	// missed pong and the watcher gets a Resync.
	WatchPing time.Duration `yaml:"watch_ping"`
}

// TLSConfig enables TLS to Redis.
type TLSConfig struct {
	Enable bool `yaml:"enable"`
	// CAFile is a PEM bundle of CAs to trust (default: system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, when Redis wants one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

const (
	defaultPrefix       = "doorman:"
	defaultDialTimeout  = 2 * time.Second
	defaultIOTimeout    = time.Second
	defaultWatchPing    = 2 * time.Second
	redactedPlaceholder = "REDACTED"
)

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = defaultPrefix
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultIOTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultIOTimeout
	}
	if c.WatchPing <= 0 {
		c.WatchPing = defaultWatchPing
	}
	return c
}

// Validate reports the first problem of c, naming the field.
func (c Config) Validate() error {
	if len(c.Addrs) == 0 {
		return fmt.Errorf("redisstore: config: addrs: at least one host:port is needed")
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redisstore: config: addrs: %q is not host:port: %w", a, err)
		}
	}
	if c.DB < 0 {
		return fmt.Errorf("redisstore: config: db: %d is negative", c.DB)
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		return fmt.Errorf("redisstore: config: key_prefix %q: no braces (the store adds its own hash tag)", c.KeyPrefix)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("redisstore: config: tls: cert_file and key_file go together")
	}
	return nil
}

// String describes c with secrets redacted.
func (c Config) String() string {
	r := c.redacted()
	return fmt.Sprintf("redis addrs=%v master=%q user=%q password=%s db=%d tls=%v prefix=%q",
		r.Addrs, r.MasterName, r.Username, r.Password, r.DB, r.TLS.Enable, r.KeyPrefix)
}

// LogValue makes slog print c without secrets.
func (c Config) LogValue() slog.Value {
	r := c.redacted()
	return slog.GroupValue(
		slog.Any("addrs", r.Addrs),
		slog.String("master_name", r.MasterName),
		slog.String("username", r.Username),
		slog.String("password", r.Password),
		slog.Int("db", r.DB),
		slog.Bool("tls", r.TLS.Enable),
		slog.String("key_prefix", r.KeyPrefix),
	)
}

func (c Config) redacted() Config {
	if c.Password != "" {
		c.Password = redactedPlaceholder
	}
	if c.SentinelPassword != "" {
		c.SentinelPassword = redactedPlaceholder
	}
	return c
}

func (t TLSConfig) build() (*tls.Config, error) {
	if !t.Enable {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // tests only, documented
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: tls: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redisstore: tls: ca_file %s: no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: tls: cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ParseURL makes a Config from a URL:
//
//	redis://[user:password@]host:port[,host:port...][/db][?master_name=m&key_prefix=p&dial_timeout=2s&read_timeout=1s&write_timeout=1s&ca_file=...&cert_file=...&key_file=...&server_name=...&insecure_skip_verify=true]
//
// rediss:// enables TLS. Several hosts (comma-separated) mean Cluster, or
// the Sentinels when master_name is given.
func ParseURL(raw string) (Config, error) {
	var c Config
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error would print the password; name the problem only.
		return c, fmt.Errorf("redisstore: url: cannot parse (check scheme and host)")
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		c.TLS.Enable = true
	default:
		return c, fmt.Errorf("redisstore: url: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if u.Host == "" {
		return c, fmt.Errorf("redisstore: url: no host")
	}
	for h := range strings.SplitSeq(u.Host, ",") {
		host, port, err := net.SplitHostPort(h)
		switch {
		case err == nil && host != "" && port != "":
		case !strings.Contains(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "]") &&
			(strings.Count(h, ":") == 0 || strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")):
			h = net.JoinHostPort(strings.Trim(h, "[]"), "6379") // no port: the default
		default:
			return c, fmt.Errorf("redisstore: url: address %q is not host:port", h)
		}
		if host, _, _ := net.SplitHostPort(h); host == "" {
			return c, fmt.Errorf("redisstore: url: address %q has no host", h)
		}
		c.Addrs = append(c.Addrs, h)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 {
			return c, fmt.Errorf("redisstore: url: database %q is not a number", p)
		}
		c.DB = db
	}
	q := u.Query()
	durations := map[string]*time.Duration{"dial_timeout": &c.DialTimeout,
		"read_timeout": &c.ReadTimeout, "write_timeout": &c.WriteTimeout, "watch_ping": &c.WatchPing}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "master_name":
			c.MasterName = v
		case "key_prefix":
			c.KeyPrefix = v
		case "ca_file":
			c.TLS.CAFile = v
		case "cert_file":
			c.TLS.CertFile = v
		case "key_file":
			c.TLS.KeyFile = v
		case "server_name":
			c.TLS.ServerName = v
		case "insecure_skip_verify":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, fmt.Errorf("redisstore: url: insecure_skip_verify=%q is not a boolean", v)
			}
			c.TLS.InsecureSkipVerify = b
		case "pool_size":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return c, fmt.Errorf("redisstore: url: pool_size=%q is not a count", v)
			}
			c.PoolSize = n
		default:
			d, ok := durations[k]
			if !ok {
				return c, fmt.Errorf("redisstore: url: unknown parameter %q", k)
			}
			dv, err := time.ParseDuration(v)
			if err != nil {
				return c, fmt.Errorf("redisstore: url: %s=%q is not a duration like 2s", k, v)
			}
			*d = dv
		}
	}
	return c, c.Validate()
}
