package finder

import (
	"syscall"
)

// deferAccept makes the kernel hand over a FastAGI connection only once its
// first bytes (the AGI environment, which Asterisk sends at once) are there:
// the session's first read then finds them instead of parking the goroutine
// for a wakeup. A peer that sends nothing is handed over after about a
// second anyway, and the session deadline deals with it.
func deferAccept(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
