package intrusion

import (
	"log/slog"
	"time"
)

// banLogsPerSecond is how many bans of one kind (local, from the cluster)
// are logged one line each per second. A flood bans thousands of addresses
// a second; a line each would cost more CPU than banning them, and bury
// everything else in the log. The rest are counted and summed up in one
// line when the next second's first ban is logged.
const banLogsPerSecond = 20

// logLimit lets banLogsPerSecond lines through per second. Callers hold
// Monitor.mu.
type logLimit struct {
	what       string // "bans", "bans from the cluster"
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be logged now, first logging how many
// were left out in the last second, if any.
func (l *logLimit) allow(log *slog.Logger, now time.Time) bool {
	if now.Sub(l.start) >= time.Second || now.Before(l.start) {
		if l.suppressed > 0 {
			log.Info("more "+l.what+" not logged one by one (see the metrics)", "count", l.suppressed, "since", l.start)
		}
		l.start, l.n, l.suppressed = now, 0, 0
	}
	if l.n >= banLogsPerSecond {
		l.suppressed++
		return false
	}
	l.n++
	return true
}
