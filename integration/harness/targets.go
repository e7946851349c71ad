package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// TargetsEnv names the targets file that makes the end-to-end suite run
// against real Asterisk servers instead of simulators.
const TargetsEnv = "DOORMAN_E2E_TARGETS"

// Targets lists real Asterisk servers, the doorman agents beside them, the
// client addresses the suite sends from and the phone accounts configured
// on the servers (integration/e2e/targets.example.yaml documents each key).
type Targets struct {
	Servers []TargetServer `yaml:"servers"`
	// Clients maps a client role (see ClientRoles) to a source address local
	// to the machine running the suite.
	Clients map[string]string `yaml:"clients"`
	// Accounts maps each extension the suite registers (see
	// TargetAccounts) to its password on every server.
	Accounts map[string]TargetAccount `yaml:"accounts"`
}

// TargetServer is one Asterisk server and its agent.
type TargetServer struct {
	Name  string      `yaml:"name"` // the agent's server.name
	SIP   TargetSIP   `yaml:"sip"`
	AMI   TargetAMI   `yaml:"ami"`
	ARI   TargetARI   `yaml:"ari"`
	Agent TargetAgent `yaml:"agent"`
	// AllowRestart lets the suite restart this Asterisk (AMI Command
	// "core restart now"); without it those steps are skipped.
	AllowRestart bool `yaml:"allow_restart"`
}

// TargetSIP holds the server's SIP addresses (host:port).
type TargetSIP struct {
	UDP  string `yaml:"udp"`  // required; also the agent's server.sip_addr
	TCP  string `yaml:"tcp"`  // optional
	UDP6 string `yaml:"udp6"` // optional IPv6 address; IPv6 steps skip without it
}

// TargetAMI is a manager user with originate, command and agi rights.
type TargetAMI struct {
	Addr       string `yaml:"addr"`
	Username   string `yaml:"username"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
}

// TargetARI is an ARI user.
type TargetARI struct {
	URL          string `yaml:"url"` // e.g. http://10.0.0.1:8088/ari
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// TargetAgent is the doorman agent beside the server.
type TargetAgent struct {
	API       string `yaml:"api"` // base URL of its HTTP API, e.g. http://10.0.0.1:9485
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// FastAGI is the agent's finder.listen as Asterisk reaches it.
	FastAGI string `yaml:"fastagi"`
}

// TargetAccount is one phone account's password.
type TargetAccount struct {
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// ClientRoles are the client names a targets file may give; the first three
// are required, a step needing a missing optional one is skipped.
var ClientRoles = []string{"attacker", "office", "phones", "phones2", "trusted", "amiattacker", "attacker6", "attacker6_sibling"}

var requiredClients = ClientRoles[:3]

// TargetAccounts are the extensions the suite registers; each needs a
// password.
var TargetAccounts = []string{"1001", "1002", "1003"}

// LoadTargets reads and checks a targets file.
func LoadTargets(path string) (*Targets, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	return ParseTargets(b)
}

// ParseTargets is LoadTargets for bytes: unknown keys, missing fields and
// malformed addresses are errors naming the field; *_file secrets are read.
func ParseTargets(b []byte) (*Targets, error) {
	var t Targets
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("targets: empty file")
		}
		return nil, fmt.Errorf("targets: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	return &t, nil
}

func (t *Targets) check() error {
	if len(t.Servers) == 0 {
		return errors.New("servers: at least one server is required")
	}
	seen := map[string]bool{}
	for i := range t.Servers {
		s := &t.Servers[i]
		f := fmt.Sprintf("servers[%d]", i)
		if s.Name == "" {
			return fmt.Errorf("%s.name: missing", f)
		}
		if seen[s.Name] {
			return fmt.Errorf("%s.name: %q used twice", f, s.Name)
		}
		seen[s.Name] = true
		f = fmt.Sprintf("servers[%d] (%s)", i, s.Name)
		for _, a := range []struct {
			field, v string
			need     bool
		}{
			{"sip.udp", s.SIP.UDP, true}, {"sip.tcp", s.SIP.TCP, false}, {"sip.udp6", s.SIP.UDP6, false},
			{"ami.addr", s.AMI.Addr, true}, {"agent.fastagi", s.Agent.FastAGI, true},
		} {
			if err := checkHostPort(a.v, a.need); err != nil {
				return fmt.Errorf("%s.%s: %w", f, a.field, err)
			}
		}
		if s.SIP.UDP6 != "" {
			if ap, err := netip.ParseAddrPort(s.SIP.UDP6); err != nil || !ap.Addr().Is6() {
				return fmt.Errorf("%s.sip.udp6: %q is not an [IPv6]:port address", f, s.SIP.UDP6)
			}
		}
		for _, u := range []struct{ field, v string }{{"ari.url", s.ARI.URL}, {"agent.api", s.Agent.API}} {
			if err := checkURL(u.v); err != nil {
				return fmt.Errorf("%s.%s: %w", f, u.field, err)
			}
		}
		for _, u := range []struct{ field, v string }{{"ami.username", s.AMI.Username}, {"ari.username", s.ARI.Username}} {
			if u.v == "" {
				return fmt.Errorf("%s.%s: missing", f, u.field)
			}
		}
		for _, sec := range []struct {
			field     string
			val, file *string
		}{
			{"ami.secret", &s.AMI.Secret, &s.AMI.SecretFile},
			{"ari.password", &s.ARI.Password, &s.ARI.PasswordFile},
			{"agent.token", &s.Agent.Token, &s.Agent.TokenFile},
		} {
			if err := readSecret(f+"."+sec.field, sec.val, *sec.file); err != nil {
				return err
			}
		}
	}
	for name, addr := range t.Clients {
		if !slices.Contains(ClientRoles, name) {
			return fmt.Errorf("clients.%s: unknown client (known: %s)", name, strings.Join(ClientRoles, ", "))
		}
		if _, err := netip.ParseAddr(addr); err != nil {
			return fmt.Errorf("clients.%s: %q is not an IP address", name, addr)
		}
	}
	for _, name := range requiredClients {
		if t.Clients[name] == "" {
			return fmt.Errorf("clients.%s: missing", name)
		}
	}
	if err := t.checkIPv6Clients(); err != nil {
		return err
	}
	for ext, a := range t.Accounts {
		if !slices.Contains(TargetAccounts, ext) {
			return fmt.Errorf("accounts.%s: unknown extension (the suite uses %s)", ext, strings.Join(TargetAccounts, ", "))
		}
		if err := readSecret("accounts."+ext+".password", &a.Password, a.PasswordFile); err != nil {
			return err
		}
		t.Accounts[ext] = a
	}
	for _, ext := range TargetAccounts {
		if _, ok := t.Accounts[ext]; !ok {
			return fmt.Errorf("accounts.%s: missing", ext)
		}
	}
	return nil
}

// checkIPv6Clients: the /64 ban step needs two addresses of one /64.
func (t *Targets) checkIPv6Clients() error {
	a, b := t.Clients["attacker6"], t.Clients["attacker6_sibling"]
	if a == "" && b == "" {
		return nil
	}
	if a == "" || b == "" {
		return errors.New("clients.attacker6 and clients.attacker6_sibling: give both or neither")
	}
	pa, pb := netip.MustParseAddr(a), netip.MustParseAddr(b)
	if !pa.Is6() || !pb.Is6() || pa.Is4In6() || pb.Is4In6() {
		return errors.New("clients.attacker6, clients.attacker6_sibling: must be IPv6 addresses")
	}
	if p, _ := pa.Prefix(64); !p.Contains(pb) || pa == pb {
		return fmt.Errorf("clients.attacker6_sibling: %s must be another address of %s's /64", b, a)
	}
	return nil
}

func checkHostPort(v string, need bool) error {
	if v == "" {
		if need {
			return errors.New("missing")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is not host:port", v)
	}
	return nil
}

func checkURL(v string) error {
	if v == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", v)
	}
	return nil
}

// readSecret fills *val from file; exactly one of the two must be given.
func readSecret(field string, val *string, file string) error {
	switch {
	case *val != "" && file != "":
		return fmt.Errorf("%s: give %s or %s_file, not both", field, field[strings.LastIndex(field, ".")+1:], field[strings.LastIndex(field, ".")+1:])
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%s_file: %w", field, err)
		}
		*val = strings.TrimSpace(string(b))
		if *val == "" {
			return fmt.Errorf("%s_file: %s is empty", field, file)
		}
	case *val == "":
		return fmt.Errorf("%s: missing (or %s_file)", field, field)
	}
	return nil
}

// Client returns the address of a client role, or "" when not given.
func (t *Targets) Client(role string) string { return t.Clients[role] }
