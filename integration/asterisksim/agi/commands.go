package agi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The fixed replies of res_agi.
const (
	replyUnknown = "510 Invalid or unknown command\n"
	replyDead    = "511 Command Not Permitted on a dead channel or intercept routine\n"
	replyUsage   = "520 Invalid command syntax.  Proper usage not available.\n"
)

// command is one entry of res_agi's command table; dead tells whether it
// may run on a hung-up channel.
type command struct {
	words []string
	dead  bool
	fn    func(s *session, ctx context.Context, argv []string) string
}

var commands = []command{
	{[]string{"answer"}, false, (*session).cmdAnswer},
	{[]string{"channel", "status"}, false, (*session).cmdChannelStatus},
	{[]string{"exec"}, true, (*session).cmdExec},
	{[]string{"get", "full", "variable"}, true, (*session).cmdGetFullVariable},
	{[]string{"get", "variable"}, true, (*session).cmdGetVariable},
	{[]string{"hangup"}, false, (*session).cmdHangup},
	{[]string{"noop"}, true, func(*session, context.Context, []string) string { return "200 result=0\n" }},
	{[]string{"set", "context"}, false, (*session).cmdSetField},
	{[]string{"set", "extension"}, false, (*session).cmdSetField},
	{[]string{"set", "priority"}, false, (*session).cmdSetField},
	{[]string{"set", "variable"}, true, (*session).cmdSetVariable},
	{[]string{"verbose"}, true, (*session).cmdVerbose},
}

// findCommand matches the leading words case-insensitively; every word of
// the command must be present.
func findCommand(argv []string) *command {
	for i := range commands {
		c := &commands[i]
		if len(argv) < len(c.words) {
			continue
		}
		ok := true
		for j, w := range c.words {
			if !strings.EqualFold(argv[j], w) {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
	}
	return nil
}

// parseArgs is res_agi's parse_args: words split on blanks and tabs, double
// quotes group (and start a word, even an empty one), a backslash takes the
// next character literally.
func parseArgs(s string) []string {
	var argv []string
	var cur []byte
	inWord, quoted, escaped, whitespace := false, false, false, true
	flush := func() {
		if inWord {
			argv = append(argv, string(cur))
		}
		cur, inWord = cur[:0], false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && !escaped:
			quoted = !quoted
			if quoted && whitespace {
				flush()
				inWord, whitespace = true, false
			}
		case (c == ' ' || c == '\t') && !quoted && !escaped:
			whitespace = true
			flush()
		case c == '\\' && !escaped:
			escaped = true
		default:
			if whitespace {
				if len(argv) >= maxArgs-1 {
					continue // Asterisk truncates
				}
				flush()
				inWord, whitespace = true, false
			}
			cur = append(cur, c)
			escaped = false
		}
	}
	flush()
	return argv
}

// handle runs one command line and returns the reply.
func (s *session) handle(ctx context.Context, line string, dead bool) string {
	argv := parseArgs(line)
	c := findCommand(argv)
	if c == nil {
		return replyUnknown
	}
	if dead && !c.dead {
		return replyDead
	}
	return c.fn(s, ctx, argv)
}

// wait blocks for d unless the caller hangs up or ctx ends; it reports
// whether the channel is still up.
func (s *session) wait(ctx context.Context, d time.Duration) bool {
	if s.dead.Load() {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.hup:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s *session) cmdAnswer(ctx context.Context, _ []string) string {
	if !s.wait(ctx, s.cfg.answerLatency) {
		return "200 result=-1\n"
	}
	s.ch.State = 6 // AST_STATE_UP
	return "200 result=0\n"
}

func (s *session) cmdChannelStatus(_ context.Context, argv []string) string {
	switch {
	case len(argv) == 2, len(argv) == 3 && argv[2] == s.ch.Name:
		return fmt.Sprintf("200 result=%d\n", s.ch.State)
	case len(argv) == 3:
		return "200 result=-1\n"
	}
	return replyUsage
}

func (s *session) cmdHangup(_ context.Context, argv []string) string {
	switch {
	case len(argv) == 1, len(argv) == 2 && argv[1] == s.ch.Name:
		s.hangup()
		return "200 result=1\n"
	case len(argv) == 2:
		return "200 result=-1\n"
	}
	return replyUsage
}

func (s *session) cmdSetField(_ context.Context, argv []string) string {
	if len(argv) != 3 {
		return replyUsage
	}
	switch strings.ToLower(argv[1]) {
	case "context":
		s.ch.Context = argv[2]
	case "extension":
		s.ch.Extension = argv[2]
	default:
		s.ch.Priority = argv[2]
	}
	return "200 result=0\n"
}

func (s *session) cmdVerbose(_ context.Context, argv []string) string {
	if len(argv) < 2 {
		return replyUsage
	}
	s.cfg.log.Debug("agi: verbose", "channel", s.ch.Name, "message", argv[1])
	return "200 result=1\n"
}

func (s *session) cmdSetVariable(_ context.Context, argv []string) string {
	if len(argv) != 4 {
		return replyUsage
	}
	s.setVar(argv[2], argv[3])
	return "200 result=1\n"
}

func (s *session) setVar(name, value string) {
	s.res.Vars[name] = value
	s.res.Set = append(s.res.Set, Var{name, value})
}

func (s *session) cmdGetVariable(_ context.Context, argv []string) string {
	if len(argv) != 3 {
		return replyUsage
	}
	if v, ok := s.lookup(argv[2]); ok {
		return "200 result=1 (" + v + ")\n"
	}
	return "200 result=0\n"
}

func (s *session) cmdGetFullVariable(_ context.Context, argv []string) string {
	if len(argv) != 4 && len(argv) != 5 {
		return replyUsage
	}
	if len(argv) == 5 && argv[4] != s.ch.Name {
		return "200 result=0\n"
	}
	return "200 result=1 (" + s.substitute(argv[3]) + ")\n"
}

// cmdExec runs a dialplan application. The simulator knows a few; an
// unknown one gives -2, as when Asterisk cannot find it.
func (s *session) cmdExec(ctx context.Context, argv []string) string {
	if len(argv) < 2 {
		return replyUsage
	}
	data := ""
	if len(argv) >= 3 {
		data = argv[2]
	}
	return fmt.Sprintf("200 result=%d\n", s.exec(ctx, strings.ToLower(argv[1]), data))
}

func (s *session) exec(ctx context.Context, app, data string) int {
	switch app {
	case "wait":
		secs, _ := strconv.ParseFloat(strings.TrimSpace(data), 64)
		if !s.wait(ctx, time.Duration(secs*float64(time.Second))) {
			return -1
		}
		return 0
	case "dial":
		if s.dead.Load() {
			s.setVar("DIALSTATUS", "CANCEL")
			return -1
		}
		s.setVar("DIALSTATUS", s.cfg.dialStatus(data))
		return 0
	case "set":
		name, value, ok := strings.Cut(data, "=")
		if !ok || name == "" {
			return 0 // Set logs a warning and continues
		}
		s.setVar(strings.TrimSpace(name), value)
		return 0
	case "hangup":
		s.hangup()
		return -1
	case "noop", "verbose", "log", "playback", "progress", "ringing", "answer", "userevent":
		if app == "answer" {
			s.ch.State = 6
		}
		if s.dead.Load() {
			return -1
		}
		return 0
	}
	return -2
}

// lookup is pbx_retrieve_variable plus a few dialplan functions: builtins
// first, then channel variables.
func (s *session) lookup(name string) (string, bool) {
	if strings.HasSuffix(name, ")") {
		return s.function(name)
	}
	switch name {
	case "CHANNEL":
		return s.ch.Name, true
	case "UNIQUEID":
		return s.ch.UniqueID, true
	case "EXTEN":
		return s.ch.Extension, true
	case "CONTEXT":
		return s.ch.Context, true
	case "PRIORITY":
		return s.ch.Priority, true
	}
	v, ok := s.res.Vars[name]
	return v, ok
}

func (s *session) function(expr string) (string, bool) {
	fn, arg, ok := strings.Cut(strings.TrimSuffix(expr, ")"), "(")
	if !ok {
		return "", false
	}
	num, nam := s.ch.CallerID, s.ch.CallerName
	if num == "unknown" {
		num = ""
	}
	if nam == "unknown" {
		nam = ""
	}
	switch strings.ToUpper(fn) {
	case "CALLERID":
		switch strings.ToLower(arg) {
		case "all":
			return `"` + nam + `" <` + num + ">", true
		case "num", "number":
			return num, true
		case "name":
			return nam, true
		}
	case "LANGUAGE":
		return s.ch.Language, true
	case "CHANNEL":
		switch strings.ToLower(arg) {
		case "name":
			return s.ch.Name, true
		case "uniqueid":
			return s.ch.UniqueID, true
		case "language":
			return s.ch.Language, true
		}
	}
	return "", false
}

// substitute expands ${...} references (nested ones too); unknown ones are
// empty, as in ast_str_substitute_variables.
func (s *session) substitute(in string) string {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		if in[i] != '$' || i+1 >= len(in) || in[i+1] != '{' {
			b.WriteByte(in[i])
			continue
		}
		depth, j := 1, i+2
		for ; j < len(in) && depth > 0; j++ {
			switch in[j] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		if depth > 0 {
			b.WriteString(in[i:]) // unterminated: left as it is
			break
		}
		v, _ := s.lookup(s.substitute(in[i+2 : j-1]))
		b.WriteString(v)
		i = j - 1
	}
	return b.String()
}
