package harness

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"
)

// Redis is a real redis-server running inside a host of the bed.
type Redis struct {
	Host *Host
	Addr string // ip:port reachable from every host
	proc *Proc
	args []string
	t    testing.TB
}

// StartRedis runs redis-server (no persistence) inside h on port 6379.
func (h *Host) StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("needs redis-server: run .ci/setup.sh")
	}
	r := &Redis{Host: h, Addr: net.JoinHostPort(h.IPv4.String(), "6379"), t: t}
	r.args = append([]string{path, "--bind", h.IPv4.String() + " 127.0.0.1", "--port", "6379",
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}, extra...)
	r.Restart()
	return r
}

// Stop kills the server (as a crash or outage would).
func (r *Redis) Stop() { r.proc.Kill() }

// Restart starts the server again on the same address.
func (r *Redis) Restart() {
	r.t.Helper()
	r.proc = r.Host.Start(r.t, fmt.Sprintf("redis-%d", time.Now().UnixNano()), r.args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Host.WaitTCP(ctx, r.Addr); err != nil {
		r.t.Fatalf("harness: redis on %s did not come up: %v", r.Addr, err)
	}
}
