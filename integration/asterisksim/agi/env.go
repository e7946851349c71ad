package agi

import (
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
)

// maxArgs is res_agi's MAX_ARGS: the script plus 127 arguments.
const maxArgs = 128

// Target is a parsed agi:// URL.
type Target struct {
	Request string // the URL as given; sent as agi_request
	Addr    string // host:port to connect to
	Script  string // the part after the first '/', "" when none
}

// ParseURL parses "agi://host[:port][/script]" as res_agi's launch_netscript
// does: the script is everything after the first '/', the port defaults to
// 4573, and an IPv6 host is written in brackets.
func ParseURL(raw string) (Target, error) {
	const scheme = "agi://"
	if len(raw) < len(scheme) || !strings.EqualFold(raw[:len(scheme)], scheme) {
		return Target{}, fmt.Errorf("agi: %q is not an agi:// URL", raw)
	}
	hostport, script, _ := strings.Cut(raw[len(scheme):], "/")
	if hostport == "" {
		return Target{}, fmt.Errorf("agi: %q has no host", raw)
	}
	host, port := hostport, DefaultPort
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return Target{}, fmt.Errorf("agi: %q has a bad port %q", raw, port)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return Target{}, fmt.Errorf("agi: %q has a bad host", raw)
	}
	return Target{Request: raw, Addr: net.JoinHostPort(host, port), Script: script}, nil
}

// SplitAppArgs splits the argument string of the dialplan application AGI()
// like Asterisk's standard argument parser: commas separate, except inside
// parentheses or double quotes; quotes are removed; a backslash takes the
// next character literally; a trailing comma adds an empty argument. The
// first piece is the URL, the rest are the script's arguments. So
// "agi://h/dialLocal,1001,25" gives ("agi://h/dialLocal", [1001 25]) and the
// seed's form "agi://h:4573,dialLocal,1001" gives ("agi://h:4573",
// [dialLocal 1001]) - then no agi_network_script is sent.
func SplitAppArgs(data string) (rawURL string, args []string) {
	parts := separateArgs(data, ',')
	if len(parts) == 0 {
		return "", nil
	}
	return parts[0], parts[1:]
}

func separateArgs(s string, delim byte) []string {
	var out []string
	if s == "" {
		return nil
	}
	var cur strings.Builder
	paren, quote := 0, false
	endedOnDelim := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		endedOnDelim = false
		switch {
		case c == '(':
			paren++
			cur.WriteByte(c)
		case c == ')':
			if paren > 0 {
				paren--
			}
			cur.WriteByte(c)
		case c == '"':
			quote = !quote
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case c == delim && paren == 0 && !quote:
			out = append(out, cur.String())
			cur.Reset()
			endedOnDelim = true
		default:
			cur.WriteByte(c)
		}
		if len(out) == maxArgs-1 {
			// Asterisk stops splitting at its array size; the rest is
			// one last argument.
			out = append(out, s[i+1:])
			return out
		}
	}
	if cur.Len() > 0 || endedOnDelim {
		out = append(out, cur.String())
	}
	return out
}

// withDefaults fills empty fields with the captured call's values.
func (c Channel) withDefaults() Channel {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Name, "Local/7000@default-00000000;2")
	def(&c.Language, "en")
	if c.Type == "" {
		c.Type, _, _ = strings.Cut(c.Name, "/")
	}
	def(&c.UniqueID, "aim-a-1795606024.1")
	def(&c.Version, "GIT-22-69535d4837")
	def(&c.CallerID, "unknown")
	def(&c.CallerName, "unknown")
	def(&c.CallingPres, "67")
	def(&c.CallingANI2, "0")
	def(&c.CallingTON, "0")
	def(&c.CallingTNS, "0")
	def(&c.DNID, "unknown")
	def(&c.RDNIS, "unknown")
	def(&c.Context, "default")
	def(&c.Extension, "7000")
	def(&c.Priority, "1")
	def(&c.Enhanced, "0.0")
	if c.ThreadID == "" {
		if c.UniqueID == "aim-a-1795606024.1" {
			c.ThreadID = "140401130534592"
		} else {
			h := fnv.New32a()
			_, _ = h.Write([]byte(c.UniqueID))
			c.ThreadID = strconv.FormatUint(140401130000000+uint64(h.Sum32()%1000000)*64, 10)
		}
	}
	if c.State == 0 {
		c.State = 4 // AST_STATE_RING: in the dialplan, not answered
	}
	vars := make(map[string]string, len(c.Vars))
	for k, v := range c.Vars {
		vars[k] = v
	}
	c.Vars = vars
	return c
}

// environment renders what Asterisk sends first (launch_netscript, then
// setup_env): values go out as they are, unescaped, as Asterisk does.
func environment(t Target, c Channel, args []string) []byte {
	var b strings.Builder
	line := func(k, v string) { b.WriteString("agi_" + k + ": " + v + "\n") }
	line("network", "yes")
	if t.Script != "" {
		line("network_script", t.Script)
	}
	line("request", t.Request)
	line("channel", c.Name)
	line("language", c.Language)
	line("type", c.Type)
	line("uniqueid", c.UniqueID)
	line("version", c.Version)
	line("callerid", c.CallerID)
	line("calleridname", c.CallerName)
	line("callingpres", c.CallingPres)
	line("callingani2", c.CallingANI2)
	line("callington", c.CallingTON)
	line("callingtns", c.CallingTNS)
	line("dnid", c.DNID)
	line("rdnis", c.RDNIS)
	line("context", c.Context)
	line("extension", c.Extension)
	line("priority", c.Priority)
	line("enhanced", c.Enhanced)
	line("accountcode", c.AccountCode)
	line("threadid", c.ThreadID)
	for i, a := range args {
		line("arg_"+strconv.Itoa(i+1), a)
	}
	b.WriteString("\n")
	return []byte(b.String())
}
