package finder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zaf/agi"
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
	status := "hangup"
	defer func() {
		conn.Close()
		s.m.active.Dec()
		s.live.Add(-1)
		s.m.sessions.WithLabelValues(status).Inc()
		s.m.seconds.Observe(s.deps.Now().Sub(start).Seconds())
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
		status = StatusError
		s.rawError(br, bw, ee.msg)
		return
	case err != nil:
		s.log.Debug("finder: FastAGI session ended before its environment", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	sess := agi.New()
	bufs.envReader.Reset(raw)
	bufs.zaf.Reset(io.MultiReader(&bufs.envReader, br))
	defer bufs.zaf.Reset(nil)
	if err := sess.Init(bufio.NewReadWriter(bufs.zaf, bw)); err != nil {
		status = StatusError
		s.rawError(br, bw, "bad AGI environment: "+err.Error())
		return
	}
	dial, st, reason := s.resolve(ctx, sess.Env)
	if _, err := sess.SetVariable(VarDialString, dial); err != nil {
		return // HANGUP or connection gone
	}
	if _, err := sess.SetVariable(VarDialStatus, st); err != nil {
		return
	}
	status = st
	if reason != "" {
		_, _ = sess.Verbose(verboseSafe("doorman dialLocal: "+reason), 1)
	}
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
	if err != nil {
		s.log.Warn("finder: lookup failed", "name", name, "err", err)
		return "", StatusError, "registration store unavailable"
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

// rawError answers a session whose environment zaf/agi cannot use: it sets
// dialStatus=ERROR, an empty dialString, and says why on the console.
func (s *AGIServer) rawError(br *bufio.Reader, bw *bufio.Writer, reason string) {
	s.log.Info("finder: bad FastAGI request", "reason", reason)
	for _, cmd := range []string{
		"SET VARIABLE " + VarDialStatus + " \"" + StatusError + "\"",
		"SET VARIABLE " + VarDialString + " \"\"",
		"VERBOSE \"" + verboseSafe("doorman dialLocal: "+reason) + "\" 1",
	} {
		if _, err := bw.WriteString(cmd + "\n"); err != nil {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
		line, err := br.ReadSlice('\n')
		if err != nil || bytes.HasPrefix(line, []byte("HANGUP")) {
			return
		}
	}
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
