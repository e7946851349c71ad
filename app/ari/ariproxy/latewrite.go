package ariproxy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Late writes. A write whose reply never came (timeout) may still reach
// Asterisk later, after a newer write to the same name, and leave a stale
// lamp: ari-proxy cannot cancel it. So a name whose write timed out is
// read back 1 s, 5 s and 30 s after its last successful write, and the
// state last written successfully is written again if it differs.

var lateChecks = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}

type lateWrites struct {
	mu    sync.Mutex
	names map[string]*lateName
}

type lateName struct {
	since  time.Time
	checks int
	want   string // last state written successfully since the timeout
}

// taint marks name after a write that may still arrive.
func (l *lateWrites) taint(name string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.names[name]
	if n == nil {
		n = &lateName{}
		l.names[name] = n
	}
	n.since, n.checks = now, 0
}

// wrote records a successful write of a tainted name.
func (l *lateWrites) wrote(name, state string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.names[name]; n != nil {
		n.want, n.since, n.checks = state, now, 0
	}
}

// due returns the names to read back now, with the state they must have.
func (l *lateWrites) due(now time.Time) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out map[string]string
	for name, n := range l.names {
		if now.Sub(n.since) < lateChecks[n.checks] {
			continue
		}
		if n.want != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = n.want
		}
		if n.checks++; n.checks == len(lateChecks) {
			delete(l.names, name)
		}
	}
	return out
}

// mayArriveLate tells whether a failed write may still reach Asterisk.
func mayArriveLate(err error) bool {
	var re *RemoteError
	return err != nil && !errors.Is(err, ErrNoProxy) && !errors.Is(err, ErrNATSDown) &&
		!errors.Is(err, ErrNoNode) && !errors.As(err, &re)
}

// checkLate reads back the due names and rewrites the stale ones.
func (c *Client) checkLate(ctx context.Context) {
	for name, want := range c.late.due(time.Now()) {
		got, err := c.DeviceState(ctx, name)
		if err != nil || got == want {
			continue
		}
		c.log.Warn("ari-proxy: a timed-out write arrived late; writing the newer state again",
			"node", c.Node(), "name", name, "found", got, "want", want)
		_ = c.SetStasisState(ctx, name, want)
	}
}
