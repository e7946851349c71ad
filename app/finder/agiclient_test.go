package finder

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// A minimal FastAGI client that behaves like Asterisk 22 (agi-session.txt):
// it sends the environment, then answers each command with "200 result=1"
// until the server closes the connection.

// envLines are the transcript's environment lines before the arguments.
var envLines = []string{
	"agi_network: yes",
	"agi_network_script: dialLocal",
	"agi_request: agi://127.0.0.1:4573/dialLocal",
	"agi_channel: Local/7000@default-00000000;2",
	"agi_language: en",
	"agi_type: Local",
	"agi_uniqueid: aim-a-1795606024.1",
	"agi_version: GIT-22-69535d4837",
	"agi_callerid: unknown",
	"agi_calleridname: unknown",
	"agi_callingpres: 67",
	"agi_callingani2: 0",
	"agi_callington: 0",
	"agi_callingtns: 0",
	"agi_dnid: unknown",
	"agi_rdnis: unknown",
	"agi_context: default",
	"agi_extension: 7000",
	"agi_priority: 1",
	"agi_enhanced: 0.0",
	"agi_accountcode: ",
	"agi_threadid: 140401130534592",
}

// scriptEnv is AGI(agi://127.0.0.1:4573/dialLocal,args...).
func scriptEnv(args ...string) []byte {
	return buildEnv(envLines, args)
}

// seedEnv is the seed's AGI(agi://127.0.0.1:4573,dialLocal,args...): no
// agi_network_script line, dialLocal is agi_arg_1.
func seedEnv(args ...string) []byte {
	var lines []string
	for _, l := range envLines {
		switch {
		case strings.HasPrefix(l, "agi_network_script:"):
		case strings.HasPrefix(l, "agi_request:"):
			lines = append(lines, "agi_request: agi://127.0.0.1:4573")
		default:
			lines = append(lines, l)
		}
	}
	return buildEnv(lines, append([]string{"dialLocal"}, args...))
}

func buildEnv(lines, args []string) []byte {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	for i, a := range args {
		fmt.Fprintf(&b, "agi_arg_%d: %s\n", i+1, a)
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// agiReply is what a session did to the channel.
type agiReply struct {
	vars     map[string]string
	verbose  []string
	commands []string
}

// agiCall connects, sends env and plays Asterisk until the server hangs up.
func agiCall(addr string, env []byte) (agiReply, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return agiReply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return agiConverse(c, env)
}

func agiConverse(c net.Conn, env []byte) (agiReply, error) {
	r := agiReply{vars: map[string]string{}}
	if _, err := c.Write(env); err != nil {
		return r, err
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return r, nil // the server is done: AGISTATUS=SUCCESS
		}
		if err != nil {
			return r, err
		}
		line = strings.TrimSuffix(line, "\n")
		r.commands = append(r.commands, line)
		words := agiWords(line)
		reply := "510 Invalid or unknown command\n"
		switch {
		case len(words) == 4 && words[0] == "SET" && words[1] == "VARIABLE":
			r.vars[words[2]] = words[3]
			reply = "200 result=1\n"
		case len(words) >= 2 && words[0] == "VERBOSE":
			r.verbose = append(r.verbose, words[1])
			reply = "200 result=1\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return r, err
		}
	}
}

// agiWords splits a command the way Asterisk's parse_args does: words,
// double quotes group, backslash escapes the next character.
func agiWords(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord, esc := false, false, false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc, inWord = true, true
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
