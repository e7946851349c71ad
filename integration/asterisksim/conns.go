package asterisksim

import (
	"net"
	"sync"
)

// connSet tracks live connections so a restart can drop them all, including
// ones hijacked by the websocket server.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newConnSet() *connSet { return &connSet{conns: map[net.Conn]struct{}{}} }

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
		delete(s.conns, c)
	}
}

// trackingListener registers every accepted connection in a connSet.
type trackingListener struct {
	net.Listener
	set *connSet
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.set.add(c)
	return trackedConn{Conn: c, set: l.set}, nil
}

type trackedConn struct {
	net.Conn
	set *connSet
}

func (c trackedConn) Close() error {
	c.set.remove(c.Conn)
	return c.Conn.Close()
}

// addrForm renders an address as Asterisk's security events do:
// IPV4/UDP/127.0.0.1/5060, IPV6/UDP/::1/5060 (no brackets).
func addrForm(transport string, a net.Addr) string {
	var ip net.IP
	port := 0
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, port = v.IP, v.Port
	case *net.TCPAddr:
		ip, port = v.IP, v.Port
	default:
		return "IPV4/" + transport + "/0.0.0.0/0"
	}
	fam := "IPV4"
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	} else {
		fam = "IPV6"
	}
	return fam + "/" + transport + "/" + ip.String() + "/" + itoa(port)
}
