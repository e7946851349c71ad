package ami

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadSleep is the coalescer's wait: a blocking nanosleep on the reader's
// thread instead of time.Sleep. time.Sleep parks the goroutine, and when
// every P is idle the runtime's sysmon thread goes into a deep sleep, to be
// woken again with the next wake-up and then poll every 20 µs: under an
// attack read every millisecond, sysmon's wake-ups were half of the agent's
// context switches. A goroutine in a system call keeps its P busy, so sysmon
// backs off instead. The wait lasts at most Config.Coalesce; other
// goroutines run on the other Ps meanwhile (or on this one, which sysmon
// hands over when work is waiting).
func threadSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
