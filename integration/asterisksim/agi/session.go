package agi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxLine is res_agi's AGI_BUF_LEN: longer command lines are cut.
const maxLine = 2048

// session is one AGI() run: the simulated channel and its connection.
type session struct {
	cfg  config
	ch   Channel
	conn net.Conn
	res  *Result

	wmu sync.Mutex // serialises writes: replies and the async HANGUP line

	dead      atomic.Bool   // the channel was hung up (also set by a timer)
	hup       chan struct{} // closed when the caller hangs up
	hupOnce   sync.Once
	announced bool // "HANGUP" was sent to the server; loop goroutine only
	cmdIndex  int
}

type lineResult struct {
	line string
	err  error
}

func run(ctx context.Context, t Target, ch Channel, args []string, cfg config) (*Result, error) {
	d := net.Dialer{Timeout: connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		// Asterisk logs the failure and sets AGISTATUS=FAILURE.
		return failed(ch), fmt.Errorf("agi: connect %s: %w", t.Addr, err)
	}
	defer conn.Close()
	s := &session{cfg: cfg, ch: ch, conn: conn, hup: make(chan struct{}),
		res: &Result{Status: "SUCCESS", Vars: ch.Vars}}
	if err := s.write(string(environment(t, ch, args))); err != nil {
		s.finish("FAILURE")
		return s.res, fmt.Errorf("agi: send environment to %s: %w", t.Addr, err)
	}

	lines := make(chan lineResult)
	stop := make(chan struct{})
	defer close(stop)
	go readLines(conn, lines, stop)

	if cfg.hangupAfter > 0 {
		tm := time.AfterFunc(cfg.hangupAfter, s.hangup)
		defer tm.Stop()
	}
	hup := s.hup
	for {
		select {
		case <-ctx.Done():
			s.finish(s.status())
			return s.res, fmt.Errorf("agi: session with %s: %w", t.Addr, ctx.Err())
		case <-hup:
			// Noticed between commands: tell the server at once.
			hup = nil
			if err := s.announce(); err != nil {
				s.finish(s.status())
				return s.res, nil
			}
		case lr := <-lines:
			if lr.err != nil {
				// The server closed the connection: the script is done.
				s.finish(s.status())
				return s.res, nil
			}
			if stopNow := s.command(ctx, lr.line); stopNow {
				return s.res, nil
			}
		}
	}
}

// readLines feeds command lines until the connection fails, the way
// res_agi's run_agi reads them: it waits for each command with poll on the
// socket, then takes it with fgets from a stdio buffer. A command that came
// in the same read as the previous one sits in that buffer unseen until the
// socket has more bytes or its end: a server that pipelines commands
// without closing its side stalls.
func readLines(conn net.Conn, out chan<- lineResult, stop <-chan struct{}) {
	st := &stdio{conn: conn}
	r := bufio.NewReaderSize(st, maxLine)
	for {
		st.poll()
		line, err := readLine(r)
		select {
		case out <- lineResult{line, err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// stdio is the socket under run_agi's FILE: poll appends what the socket
// has (blocking until it has something or ends); Read serves that first.
type stdio struct {
	conn    net.Conn
	pending []byte
	err     error // the socket's end (or failure), once seen
}

// poll blocks until the socket has bytes not yet read, or has ended.
func (s *stdio) poll() {
	if s.err != nil {
		return // an ended socket stays readable
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	s.pending = append(s.pending, buf[:n]...)
	s.err = err
}

// Read is fgets' refill: buffered bytes first, then the socket.
func (s *stdio) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.conn.Read(p)
	s.err = err
	return n, err
}

// readLine reads one line, cut at maxLine, without its "\n" or "\r\n".
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b) < maxLine {
			b = append(b, chunk[:min(len(chunk), maxLine-len(b))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				// A last line without newline still counts as read; the
				// next read reports EOF.
				return strings.TrimSuffix(string(b), "\r"), nil
			}
			return "", err
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), nil
	}
}

func (s *session) write(msg string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(s.conn, msg)
	return err
}

// hangup marks the caller gone.
func (s *session) hangup() {
	s.hupOnce.Do(func() {
		s.dead.Store(true)
		close(s.hup)
	})
}

// announce sends the unprompted "HANGUP" line once, as run_agi does when it
// notices the hangup (AGISIGHUP is on by default).
func (s *session) announce() error {
	if !s.dead.Load() || s.announced {
		return nil
	}
	s.announced = true
	return s.write("HANGUP\n")
}

func (s *session) status() string {
	if s.dead.Load() {
		return "HANGUP"
	}
	return "SUCCESS"
}

func (s *session) finish(status string) {
	s.res.Status = status
	s.res.Vars["AGISTATUS"] = status
	s.res.HungUp = s.dead.Load()
}

// command handles one line; it returns true when the session is over.
func (s *session) command(ctx context.Context, line string) bool {
	s.res.Commands = append(s.res.Commands, line)
	s.cmdIndex++
	// A script that cannot run says "FAILURE"; Asterisk ends AGI() there.
	if len(line) >= 7 && strings.EqualFold(line[:7], "failure") {
		s.finish("FAILURE")
		return true
	}
	// Permission is judged on the channel as it was when the command came;
	// a hangup "during" it is seen by blocking applications only.
	deadAtStart := s.dead.Load()
	if s.cfg.hangupDuring == s.cmdIndex {
		s.hangup()
	}
	reply := s.handle(ctx, line, deadAtStart)
	if s.cfg.onCommand != nil {
		s.cfg.onCommand(line, reply)
	}
	if err := s.write(reply); err != nil {
		s.finish(s.status())
		return true
	}
	if err := s.announce(); err != nil {
		s.finish(s.status())
		return true
	}
	return false
}
