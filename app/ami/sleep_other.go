//go:build !linux

package ami

import "time"

// threadSleep is time.Sleep off Linux; see sleep_linux.go.
func threadSleep(d time.Duration) { time.Sleep(d) }
