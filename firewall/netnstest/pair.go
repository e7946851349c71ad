package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// Pair is two namespaces linked by a veth pair: A (the "client", e.g. an
// attacker) and B (the "server" whose firewall is under test).
//
// A has two addresses of each family in the same prefix (A4/A4b in
// 192.0.2.0/24, A6/A6b in fd00:a::/64), so a test can check that a prefix
// ban covers an address it was not created from. B has B4 (same /24) and B6
// in its own fd00:b::/64; each side has an on-link route to the other's v6
// prefix, so banning fd00:a::/64 never covers B.
type Pair struct {
	A, B        *NS
	A4, A4b, B4 netip.Addr
	A6, A6b, B6 netip.Addr
	IfA, IfB    string // veth names inside A and B
}

// NewPair creates two namespaces linked by a veth pair and addressed as
// described on Pair. Everything is removed when the test ends.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	p := &Pair{
		A: New(tb), B: New(tb),
		A4: netip.MustParseAddr("192.0.2.1"), A4b: netip.MustParseAddr("192.0.2.11"),
		B4: netip.MustParseAddr("192.0.2.2"),
		A6: netip.MustParseAddr("fd00:a::1"), A6b: netip.MustParseAddr("fd00:a::beef"),
		B6:  netip.MustParseAddr("fd00:b::1"),
		IfA: "veth-a", IfB: "veth-b",
	}
	// Create the veth inside A and move its peer into B, so nothing ever
	// appears in the caller's namespace.
	p.A.MustRun(tb, "ip", "link", "add", p.IfA, "type", "veth", "peer", "name", p.IfB, "netns", p.B.Name)
	for _, c := range [][]string{
		{"ip", "addr", "add", p.A4.String() + "/24", "dev", p.IfA},
		{"ip", "addr", "add", p.A4b.String() + "/24", "dev", p.IfA},
		{"ip", "-6", "addr", "add", p.A6.String() + "/64", "dev", p.IfA, "nodad"},
		{"ip", "-6", "addr", "add", p.A6b.String() + "/64", "dev", p.IfA, "nodad"},
		{"ip", "link", "set", p.IfA, "up"},
		{"ip", "-6", "route", "add", "fd00:b::/64", "dev", p.IfA},
	} {
		p.A.MustRun(tb, c[0], c[1:]...)
	}
	for _, c := range [][]string{
		{"ip", "addr", "add", p.B4.String() + "/24", "dev", p.IfB},
		{"ip", "-6", "addr", "add", p.B6.String() + "/64", "dev", p.IfB, "nodad"},
		{"ip", "link", "set", p.IfB, "up"},
		{"ip", "-6", "route", "add", "fd00:a::/64", "dev", p.IfB},
	} {
		p.B.MustRun(tb, c[0], c[1:]...)
	}
	return p
}

// ListenUDP opens a UDP socket bound to addr inside the namespace and closes
// it when the test ends.
func (ns *NS) ListenUDP(tb testing.TB, addr netip.AddrPort) *net.UDPConn {
	tb.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		tb.Fatalf("netnstest: listen udp %v in %s: %v", addr, ns.Name, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Probe sends UDP datagrams from one socket to a listener and reports which
// arrive. Both sockets are fixed, so successive probes belong to one
// conntrack flow.
type Probe struct {
	From, To *net.UDPConn
	n        int
}

// NewProbe binds a sender to src:0 in ns and a listener to dst in other.
func NewProbe(tb testing.TB, ns *NS, src netip.Addr, other *NS, dst netip.AddrPort) *Probe {
	tb.Helper()
	return &Probe{
		From: ns.ListenUDP(tb, netip.AddrPortFrom(src, 0)),
		To:   other.ListenUDP(tb, dst),
	}
}

// Reaches sends one datagram and reports whether the listener received it
// within wait. The listener answers every datagram it gets (the reply makes
// the flow ESTABLISHED in conntrack); the answer is read when it arrives.
func (p *Probe) Reaches(tb testing.TB, wait time.Duration) bool {
	tb.Helper()
	p.n++
	want := fmt.Sprintf("probe-%d", p.n)
	dst := p.To.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := p.From.WriteToUDPAddrPort([]byte(want), dst); err != nil {
		tb.Fatalf("netnstest: send probe: %v", err)
	}
	buf := make([]byte, 64)
	deadline := time.Now().Add(wait)
	for {
		if err := p.To.SetReadDeadline(deadline); err != nil {
			tb.Fatal(err)
		}
		n, from, err := p.To.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			tb.Fatalf("netnstest: read probe: %v", err)
		}
		if string(buf[:n]) != want {
			continue // a late copy of an earlier probe
		}
		if _, err := p.To.WriteToUDPAddrPort([]byte("ack-"+want), from); err != nil {
			tb.Fatalf("netnstest: answer probe: %v", err)
		}
		return true
	}
}
