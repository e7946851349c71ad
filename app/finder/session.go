package finder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zaf/agi"

	"github.com/asterisksupport/doorman/app/state"
)

// AGI environment limits: Asterisk 22 sends about 27 lines of well under
// 200 bytes; anything far beyond is not Asterisk.
const (
	maxEnvLines = 150 // zaf/agi's own limit
	maxLineLen  = 4096
	scriptName  = "dialLocal"
)

// sessionBufs are one session's buffers, pooled: a session is short and
// these are most of what it allocates.
type sessionBufs struct {
	conn      *bufio.Reader // the connection, bounded line length
	zaf       *bufio.Reader // zaf/agi's view: environment bytes, then conn
	w         *bufio.Writer
	env       []byte
	envReader bytes.Reader
	sess      *agi.Session
}

// session returns the pooled zaf/agi Session, its environment emptied.
func (b *sessionBufs) session() *agi.Session {
	if b.sess == nil || b.sess.Env == nil { // Init drops Env on a parse error
		b.sess = agi.New()
	}
	clear(b.sess.Env)
	return b.sess
}

var sessionPool = sync.Pool{New: func() any {
	return &sessionBufs{
		conn: bufio.NewReaderSize(nil, maxLineLen),
		zaf:  bufio.NewReaderSize(nil, 1024),
		w:    bufio.NewWriterSize(nil, 512),
		env:  make([]byte, 0, 2048),
	}
}}

// errEnv is a malformed but complete environment: the peer waits for
// commands, so it gets a reasoned ERROR reply.
type errEnv struct{ msg string }

func (e *errEnv) Error() string { return e.msg }

// readEnv reads the AGI environment up to its blank line, bounded in lines
// and line length (zaf/agi's reader is not), and returns its raw bytes for
// zaf/agi to parse.
func readEnv(br *bufio.Reader) ([]byte, error) {
	return readEnvInto(br, nil)
}

// readEnvInto is readEnv appending to buf (pooled by the server).
func readEnvInto(br *bufio.Reader, buf []byte) ([]byte, error) {
	raw := bytes.NewBuffer(buf[:0])
	var bad error
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("environment line %d longer than %d bytes", n+1, maxLineLen)
		}
		if err != nil {
			return nil, err // EOF, timeout: nobody to answer
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			if bad != nil {
				return nil, bad
			}
			raw.WriteByte('\n')
			return raw.Bytes(), nil
		}
		if n >= maxEnvLines {
			return nil, fmt.Errorf("environment longer than %d lines", maxEnvLines)
		}
		key, _, ok := bytes.Cut(line, []byte(": "))
		if bad == nil && (!ok || !bytes.HasPrefix(key, []byte("agi_")) || len(key) > len("agi_network_script")) {
			bad = &errEnv{fmt.Sprintf("malformed environment line %d", n+1)}
		}
		raw.Write(bytes.TrimRight(line, "\r\n"))
		raw.WriteByte('\n')
	}
}

// scriptArgs finds dialLocal's arguments in both forms Asterisk sends:
// agi://host/dialLocal,a,b (agi_network_script dialLocal, args from arg_1)
// and agi://host,dialLocal,a,b (no agi_network_script, dialLocal is arg_1).
func scriptArgs(env map[string]string) ([]string, error) {
	var args []string
	for i := 1; ; i++ {
		v, ok := env["arg_"+strconv.Itoa(i)]
		if !ok {
			break
		}
		args = append(args, v)
	}
	script := env["network_script"]
	switch {
	case script == scriptName:
		return args, nil
	case script != "":
		return nil, argErrorf("unknown script %s (want %s)", quoteSafe(script), scriptName)
	case len(args) > 0 && strings.TrimSpace(args[0]) == scriptName:
		return args[1:], nil
	}
	return nil, argErrorf("no %s script: use agi://host:port/%s,exten,timeout,options,account", scriptName, scriptName)
}

// session serves one FastAGI connection. Every exit path closes conn; the
// deadline bounds the whole session, so a silent peer cannot pin a goroutine.
func (s *AGIServer) session(ctx context.Context, conn net.Conn) {
	start := s.deps.Now()
	s.m.active.Inc()
	s.live.Add(1)
	status := statusHangup
	defer func() {
		conn.Close()
		s.m.session(status).Inc()
		s.m.seconds.Observe(s.deps.Now().Sub(start).Seconds())
		s.m.active.Dec()
		s.live.Add(-1) // last: a session seen ended is counted
	}()
	_ = conn.SetDeadline(time.Now().Add(s.c.cfg.SessionTimeout))
	bufs := sessionPool.Get().(*sessionBufs)
	defer sessionPool.Put(bufs)
	br, bw := bufs.conn, bufs.w
	br.Reset(conn)
	bw.Reset(conn)
	defer br.Reset(nil) // drop conn references before pooling
	defer bw.Reset(nil)

	raw, err := readEnvInto(br, bufs.env)
	if cap(raw) <= 8192 {
		bufs.env = raw[:0]
	}
	var ee *errEnv
	switch {
	case errors.As(err, &ee):
		s.log.Info("finder: bad FastAGI request", "reason", ee.msg)
		status = answer(conn, br, bw, "", StatusError, ee.msg)
		return
	case err != nil:
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("finder: FastAGI session ended before its environment", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	// zaf/agi parses the environment (already bounded by readEnvInto); its
	// Session is pooled with its map. answer writes the commands itself, in
	// zaf/agi's format, without its fmt and per-command allocations.
	sess := bufs.session()
	bufs.envReader.Reset(raw)
	bufs.zaf.Reset(&bufs.envReader)
	defer bufs.zaf.Reset(nil)
	if err := sess.Init(bufio.NewReadWriter(bufs.zaf, nil)); err != nil {
		reason := "bad AGI environment: " + err.Error()
		s.log.Info("finder: bad FastAGI request", "reason", reason)
		status = answer(conn, br, bw, "", StatusError, reason)
		return
	}
	dial, st, reason := s.resolve(ctx, sess.Env)
	status = answer(conn, br, bw, dial, st, reason)
}

// statusHangup counts sessions that ended without both variables set: the
// channel hung up (HANGUP) or the connection ended early.
const statusHangup = "hangup"

// answer sets dialString and dialStatus (and, with a reason, a VERBOSE
// line for the console) and returns st, or statusHangup if the channel
// hangs up or the connection fails before both are set.
//
// All commands go in one write, followed by the end of the server's side
// of the connection (CloseWrite), and the replies are read after: one round
// trip. The end matters: res_agi's run_agi waits for each command with poll
// on the socket and then reads it with fgets from a stdio buffer, so a
// second command that arrived with the first would sit in that buffer
// unseen, and the call would stall until session_timeout; once the socket
// has ended, poll returns at once and fgets takes the buffered commands one
// by one, each answered in order, then AGI() ends with AGISTATUS SUCCESS as
// when the server closes. An unprompted HANGUP line before or between the
// replies ends the session (the channel is gone). A connection that cannot
// end its side alone gets one command per round trip.
func answer(conn net.Conn, br *bufio.Reader, bw *bufio.Writer, dial, st, reason string) string {
	hc, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		return answerInTurn(br, bw, dial, st, reason)
	}
	n := 2
	writeSet(bw, VarDialString, dial)
	writeSet(bw, VarDialStatus, st)
	if reason != "" {
		n++
		writeVerbose(bw, reason)
	}
	if bw.Flush() != nil || hc.CloseWrite() != nil {
		return statusHangup
	}
	for got := 0; got < n; got++ { // any reply (200, 510, 511, 520) answers one command
		if !readReply(br) {
			if got >= 2 { // both variables are set; only VERBOSE's reply is missing
				return st
			}
			return statusHangup
		}
	}
	return st
}

// answerInTurn is answer with one command per round trip.
func answerInTurn(br *bufio.Reader, bw *bufio.Writer, dial, st, reason string) string {
	if !command(br, bw, func() { writeSet(bw, VarDialString, dial) }) ||
		!command(br, bw, func() { writeSet(bw, VarDialStatus, st) }) {
		return statusHangup
	}
	if reason != "" {
		command(br, bw, func() { writeVerbose(bw, reason) })
	}
	return st
}

// command sends one command written by write and reads its reply; false
// when the channel hung up or the connection failed. Any reply (200, 510,
// 511, 520) answers the command.
func command(br *bufio.Reader, bw *bufio.Writer, write func()) bool {
	if br.Buffered() > 0 { // an unprompted HANGUP after the last reply, as zaf/agi checks
		return false
	}
	write()
	if bw.Flush() != nil {
		return false
	}
	return readReply(br)
}

// readReply reads the reply to one command; false when the channel hung up
// (an unprompted HANGUP line) or the connection failed. A command with bad
// syntax gets res_agi's usage reply, several lines read as one:
// "520-Invalid command syntax.  Proper usage follows:", the usage text (any
// lines, possibly "200 result=..." examples), then "520 End of proper
// usage." written right after the usage: on its own line, or at the end of
// the usage's last line when that lacks a newline.
func readReply(br *bufio.Reader) bool {
	line, err := br.ReadSlice('\n')
	if err != nil || bytes.HasPrefix(line, []byte("HANGUP")) {
		return false
	}
	if !bytes.HasPrefix(line, []byte("520-")) {
		return true
	}
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull: // a long usage line: read on
		case err != nil:
			return false
		case bytes.HasPrefix(line, []byte("520 ")) || bytes.Contains(line, []byte("520 End of proper usage.")):
			return true
		}
	}
}

// writeVerbose writes zaf/agi's Verbose line at level 1.
func writeVerbose(bw *bufio.Writer, reason string) {
	bw.WriteString(`VERBOSE "`)
	bw.WriteString(verboseSafe("doorman dialLocal: " + reason))
	bw.WriteString("\" 1\n")
}

// writeSet writes zaf/agi's SetVariable line: SET VARIABLE "name" "value".
// Values are built from checked parts; verboseSafe is the last guard that
// keeps them inside their quotes and on one line.
func writeSet(bw *bufio.Writer, name, value string) {
	bw.WriteString(`SET VARIABLE "`)
	bw.WriteString(name)
	bw.WriteString(`" "`)
	bw.WriteString(verboseSafe(value))
	bw.WriteString("\"\n")
}

// resolve decides the dial string for one session; reason is set for
// every status a dialplan author may want explained in the console.
func (s *AGIServer) resolve(ctx context.Context, env map[string]string) (dial, status, reason string) {
	args, err := scriptArgs(env)
	if err != nil {
		return "", StatusError, err.Error()
	}
	req, err := s.c.parseArgs(args)
	if err != nil {
		return "", StatusInvalid, err.Error()
	}
	if !s.c.accountKnown(req.account) {
		return "", StatusUnknownAccount, "unknown account " + quoteSafe(req.account)
	}
	name := s.c.tmpl.name(req.account, req.exten)
	lctx, cancel := context.WithTimeout(ctx, s.c.cfg.LookupTimeout)
	regs, err := s.locate(lctx, name)
	cancel()
	regs, local := s.withLocal(name, regs)
	if err != nil {
		s.log.Warn("finder: lookup failed", "name", name, "err", err)
		if !local || len(regs) == 0 {
			return "", StatusError, "registration store unavailable"
		}
		// Store down: this server's own contacts still answer (LOCAL).
	}
	dial, status, skipped := s.c.buildDial(req, regs)
	if skipped > 0 {
		s.log.Warn("finder: skipped registrations with unsafe stored fields", "name", name, "count", skipped)
	}
	if status == StatusNotFound {
		return "", status, name + " is not registered on any live server"
	}
	return dial, status, ""
}

// withLocal replaces the store's registrations of this server with the
// tracker's own view (when there is one and it has synchronised): it is
// current even when a store write failed or the store is unreachable.
func (s *AGIServer) withLocal(name string, regs []state.Registration) ([]state.Registration, bool) {
	if s.deps.Local == nil {
		return regs, false
	}
	own, ok := s.deps.Local.LocalRegistrations(name)
	if !ok {
		return regs, false
	}
	out := own
	for _, r := range regs {
		if r.Server != s.c.cfg.Server {
			out = append(out, r)
		}
	}
	return out, true
}

// verboseSafe keeps a message inside AGI's quoted argument.
func verboseSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
}
