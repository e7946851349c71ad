// Package redistest runs a real redis-server on a free loopback port for
// tests: start, kill, restart on the same port (with or without keeping its
// data), password or ACL user, and TLS with certificates made in Go.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the redis-server executable used by Start.
const Binary = "/usr/bin/redis-server"

// Option configures a Server before it starts.
type Option func(*Server)

// WithPassword makes the default user require password (AUTH password).
func WithPassword(password string) Option {
	return func(s *Server) { s.password = password }
}

// WithACLUser adds an ACL user with the given rules (for example
// "~{doorman}:* &{doorman}:* +@all") and disables the default user.
// Empty rules means "~* &* +@all".
func WithACLUser(user, password, rules string) Option {
	return func(s *Server) {
		if rules == "" {
			rules = "~* &* +@all"
		}
		s.aclUser, s.aclPass, s.aclRules = user, password, rules
	}
}

// WithPersistence keeps the data across Restart (append-only file fsynced
// on every write, in a temporary directory).
func WithPersistence() Option {
	return func(s *Server) { s.persist = true }
}

// WithTLS serves TLS only (no plain port). Client certificates are not
// required unless WithClientCerts is also given. See Server.TLS.
func WithTLS() Option {
	return func(s *Server) { s.tls = true }
}

// WithClientCerts makes the TLS server require a client certificate signed
// by the test CA (implies WithTLS).
func WithClientCerts() Option {
	return func(s *Server) { s.tls, s.clientCerts = true, true }
}

// WithArgs adds raw redis-server arguments, one word each.
func WithArgs(args ...string) Option {
	return func(s *Server) { s.extra = append(s.extra, args...) }
}

// Server is one redis-server process under test control.
type Server struct {
	// Addr is the loopback host:port the server listens on (TLS when
	// started WithTLS). It stays the same across Restart.
	Addr string
	// TLS holds the generated certificate files when started WithTLS.
	TLS *TLSFiles

	t           testing.TB
	dir         string
	password    string
	aclUser     string
	aclPass     string
	aclRules    string
	persist     bool
	tls         bool
	clientCerts bool
	extra       []string
	sentinel    string // config file when this is a Sentinel

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

// Start runs redis-server on a free loopback port and stops it when the
// test ends. It fails the test if the server does not become ready.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("redistest: %s not installed", Binary)
	}
	s := &Server{t: t, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	if s.tls {
		files, err := writeCerts(s.dir)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.TLS = files
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := s.start(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL returns a redis:// or rediss:// URL for the server, with the ACL user
// or password when one is configured.
func (s *Server) URL() string {
	scheme := "redis"
	if s.tls {
		scheme = "rediss"
	}
	auth := ""
	switch {
	case s.aclUser != "":
		auth = s.aclUser + ":" + s.aclPass + "@"
	case s.password != "":
		auth = ":" + s.password + "@"
	}
	return scheme + "://" + auth + s.Addr
}

// Username and Password return the credentials a client needs ("" if none).
func (s *Server) Username() string { return s.aclUser }

// Password returns the password of the ACL user, or of the default user.
func (s *Server) Password() string {
	if s.aclUser != "" {
		return s.aclPass
	}
	return s.password
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart kills the server and starts it again on the same port. Data
// survives only WithPersistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Freeze stops the server process (SIGSTOP) without closing its sockets,
// like a hung host: connections stay open but nothing answers.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

// Pid returns the server's process id, 0 when stopped (for CPU accounting).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Log returns what the server printed so far (for failure messages).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

func (s *Server) args() []string {
	_, port, _ := net.SplitHostPort(s.Addr)
	if s.sentinel != "" {
		return []string{s.sentinel, "--sentinel", "--port", port, "--bind", "127.0.0.1",
			"--logfile", "", "--daemonize", "no", "--protected-mode", "no"}
	}
	a := []string{"--bind", "127.0.0.1", "--save", "", "--dir", s.dir,
		"--logfile", "", "--daemonize", "no", "--protected-mode", "no"}
	if s.persist {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.tls {
		a = append(a, "--port", "0", "--tls-port", port,
			"--tls-cert-file", s.TLS.ServerCert, "--tls-key-file", s.TLS.ServerKey,
			"--tls-ca-cert-file", s.TLS.CA,
			"--tls-auth-clients", map[bool]string{true: "yes", false: "no"}[s.clientCerts])
	} else {
		a = append(a, "--port", port)
	}
	if s.password != "" {
		a = append(a, "--requirepass", s.password)
	}
	if s.aclUser != "" {
		// Each word is its own argument: redis-server quotes an argument
		// holding spaces as one token.
		a = append(a, "--user", "default", "off", "--user", s.aclUser, "on", ">"+s.aclPass)
		a = append(a, strings.Fields(s.aclRules)...)
	}
	return append(a, s.extra...)
}

func (s *Server) start() error {
	cmd := exec.Command(Binary, s.args()...)
	logBuf := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			logBuf.WriteLine(line)
			if strings.Contains(line, "Ready to accept connections") ||
				s.sentinel != "" && strings.Contains(line, "+monitor master") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, logBuf
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-ready:
		return nil
	case <-done:
		s.mu.Lock()
		s.cmd = nil
		s.mu.Unlock()
		return fmt.Errorf("redis-server exited at start:\n%s", logBuf.String())
	case <-ctx.Done():
		s.Stop()
		return fmt.Errorf("redis-server not ready after 10s:\n%s", logBuf.String())
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() < 1<<20 {
		b.b.WriteString(s)
		b.b.WriteByte('\n')
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
