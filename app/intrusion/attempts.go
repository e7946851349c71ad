package intrusion

import (
	"net/netip"
	"strings"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
)

// attemptKey identifies one attempt: Asterisk's SessionID (a SIP Call-ID or
// an AMI session pointer) seen from one source.
type attemptKey struct {
	session string
	source  netip.AddrPort
}

// attempts groups security events into attempts. One failed REGISTER round
// for an unknown PJSIP account raises InvalidAccountID twice plus
// ChallengeResponseFailed with the same Call-ID and source: one attempt.
// SessionID alone is not enough (phones reuse their Call-ID for every
// REGISTER, attackers choose it, AMI reuses session pointers), so a group
// lives only for window after its first event; a later event with the same
// key starts a new attempt.
//
// Memory is bounded: groups are kept in arrival order, which is also expiry
// order because the window is constant, and the oldest are dropped when max
// is reached (which can only split an attempt, never merge two).
// Not safe for concurrent use.
type attempts struct {
	window time.Duration
	max    int
	open   map[attemptKey]time.Time // key -> expiry
	fifo   []attemptEntry           // ring buffer in arrival order
	head   int
	n      int
}

type attemptEntry struct {
	key     attemptKey
	expires time.Time
}

func newAttempts(window time.Duration, max int) *attempts {
	return &attempts{window: window, max: max, open: make(map[attemptKey]time.Time), fifo: make([]attemptEntry, 64)}
}

// observe records an event of key at now and reports whether it starts a
// new attempt.
func (a *attempts) observe(k attemptKey, now time.Time) bool {
	a.expire(now)
	if exp, ok := a.open[k]; ok && now.Before(exp) {
		return false
	}
	if a.n >= a.max {
		a.pop()
	}
	exp := now.Add(a.window)
	a.open[k] = exp
	a.push(attemptEntry{key: k, expires: exp})
	return true
}

// close ends key's attempt now: its next event starts a new one.
func (a *attempts) close(k attemptKey) {
	delete(a.open, k) // its ring entry stays until it expires; pop ignores it
}

// endsAttempt reports whether ev is the last event Asterisk raises for one
// attempt: the failed challenge response of a SIP REGISTER round or an MD5
// AMI login, a wrong AMI secret, or any AMI failure (one event per login).
func endsAttempt(ev ami.SecurityEvent) bool {
	switch {
	case ev.Type == "ChallengeResponseFailed", ev.Type == "InvalidPassword":
		return true
	case strings.EqualFold(ev.Service, "AMI"):
		return true
	}
	return false
}

// expire drops groups whose window has passed.
func (a *attempts) expire(now time.Time) {
	for a.n > 0 && !now.Before(a.fifo[a.head].expires) {
		a.pop()
	}
}

func (a *attempts) push(e attemptEntry) {
	if a.n == len(a.fifo) {
		grown := make([]attemptEntry, 2*len(a.fifo))
		for i := 0; i < a.n; i++ {
			grown[i] = a.fifo[(a.head+i)%len(a.fifo)]
		}
		a.fifo, a.head = grown, 0
	}
	a.fifo[(a.head+a.n)%len(a.fifo)] = e
	a.n++
}

func (a *attempts) pop() {
	e := a.fifo[a.head]
	a.fifo[a.head] = attemptEntry{}
	a.head = (a.head + 1) % len(a.fifo)
	a.n--
	// A key re-opened later has a later expiry in the map; keep it.
	if exp, ok := a.open[e.key]; ok && exp.Equal(e.expires) {
		delete(a.open, e.key)
	}
}

// len reports how many groups are open.
func (a *attempts) len() int { return len(a.open) }
