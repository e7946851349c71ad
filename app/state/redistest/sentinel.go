package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// StartReplica starts a server replicating master.
func StartReplica(t testing.TB, master *Server, opts ...Option) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	return Start(t, append(opts, WithArgs("--replicaof", host, port))...)
}

// StartSentinel starts a Sentinel monitoring master under name with quorum
// 1 and short timeouts (down after 500 ms), so failovers take seconds.
// Start replicas before it: Sentinel finds them through the master.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	s := &Server{t: t, dir: t.TempDir()}
	s.sentinel = filepath.Join(s.dir, "sentinel.conf")
	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 1\n"+
		"sentinel down-after-milliseconds %[1]s 500\n"+
		"sentinel failover-timeout %[1]s 5000\n", name, host, port)
	if err := os.WriteFile(s.sentinel, []byte(conf), 0o600); err != nil {
		t.Fatalf("redistest: sentinel config: %v", err)
	}
	p, err := freePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	if err := s.start(); err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
