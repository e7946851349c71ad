package ami

import (
	"math/rand/v2"
	"time"
)

// backoff yields exponentially growing delays with "equal jitter" (half
// fixed, half random), so a cluster of agents does not redial in lockstep
// after an Asterisk restart.
type backoff struct {
	min, max time.Duration
	n        uint
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi} }

func (b *backoff) reset() { b.n = 0 }

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 32 {
		if x := b.min << b.n; x > 0 && x < b.max {
			d = x
		}
	}
	b.n++
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}
