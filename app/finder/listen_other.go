//go:build !linux

package finder

import "syscall"

// deferAccept is Linux's TCP_DEFER_ACCEPT; elsewhere sessions read as usual.
func deferAccept(syscall.RawConn) error { return nil }
