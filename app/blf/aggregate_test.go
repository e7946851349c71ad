package blf

import (
	"slices"
	"testing"
)

// The C code, transcribed with its own numbers, as the oracle:
// enum ast_device_state and ast_devstate_aggregate_add's state_order.
var cEnum = map[string]int{Unknown: 0, NotInUse: 1, InUse: 2, Busy: 3, Invalid: 4, Unavailable: 5, Ringing: 6, RingInUse: 7, OnHold: 8}
var cNames = []string{Unknown, NotInUse, InUse, Busy, Invalid, Unavailable, Ringing, RingInUse, OnHold}
var cStateOrder = []int{1, 3, 6, 7, 0, 2, 5, 8, 4}

func cAggregate(states []string) string {
	agg := cEnum[Invalid] // ast_devstate_aggregate_init
	ringing, inuse := false, false
	for _, name := range states {
		st, ok := cEnum[name]
		if !ok {
			st = cEnum[Unknown] // ast_devstate_val's default
		}
		if st == cEnum[Ringing] {
			ringing = true
		} else if st == cEnum[InUse] || st == cEnum[OnHold] || st == cEnum[Busy] {
			inuse = true
		}
		if ringing && inuse {
			agg = cEnum[RingInUse]
		} else if cStateOrder[st] > cStateOrder[agg] {
			agg = st
		}
	}
	return cNames[agg]
}

// TestAggregateMatchesAsteriskExhaustively compares every sequence of up to
// four states (the nine, plus an unknown string) with the C oracle.
func TestAggregateMatchesAsteriskExhaustively(t *testing.T) {
	alphabet := append(slices.Clone(cNames), "BOGUS")
	n := 0
	var rec func(seq []string)
	rec = func(seq []string) {
		n++
		if got, want := Aggregate(seq...), cAggregate(seq); got != want {
			t.Fatalf("Aggregate(%v) = %s, Asterisk gives %s", seq, got, want)
		}
		if len(seq) == 4 {
			return
		}
		for _, s := range alphabet {
			rec(append(seq, s))
		}
	}
	rec(nil)
	if n != 1+10+100+1000+10000 {
		t.Fatalf("checked %d sequences", n)
	}
}

func TestAggregateRules(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, Invalid},
		{[]string{Unknown}, Unknown},
		{[]string{Invalid, Unknown}, Unknown},
		{[]string{Unknown, Unavailable}, Unavailable},
		{[]string{Unavailable, NotInUse}, NotInUse},
		{[]string{NotInUse, OnHold}, OnHold},
		{[]string{OnHold, Ringing}, RingInUse}, // ringing + on hold
		{[]string{Ringing, InUse}, RingInUse},
		{[]string{InUse, Ringing}, RingInUse},
		{[]string{Busy, Ringing}, RingInUse},
		{[]string{Ringing, NotInUse}, Ringing},
		{[]string{InUse, Busy}, Busy},
		{[]string{Busy, RingInUse}, RingInUse},
		{[]string{"inuse"}, InUse}, // ast_devstate_val is case-insensitive
		{[]string{"SIDEWAYS", Unavailable}, Unavailable},
		{[]string{Ringing, NotInUse, InUse, Unavailable}, RingInUse},
	} {
		if got := Aggregate(tc.in...); got != tc.want {
			t.Errorf("Aggregate(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestAggregateIgnoresOrder(t *testing.T) {
	all := []string{Unknown, NotInUse, InUse, Busy, Invalid, Unavailable, Ringing, RingInUse, OnHold}
	for i := range all {
		for j := range all {
			for k := range all {
				a := Aggregate(all[i], all[j], all[k])
				for _, p := range [][]string{{all[i], all[k], all[j]}, {all[j], all[i], all[k]}, {all[k], all[j], all[i]}} {
					if b := Aggregate(p...); b != a {
						t.Fatalf("Aggregate order-dependent: %v -> %s, %v -> %s", []string{all[i], all[j], all[k]}, a, p, b)
					}
				}
			}
		}
	}
}

// extenState is ast_devstate_to_extenstate as AMI ExtensionState shows it.
func extenState(agg string) int {
	switch agg {
	case NotInUse, Unknown:
		return 0
	case InUse:
		return 1
	case Busy:
		return 2
	case Unavailable, Invalid:
		return 4
	case Ringing:
		return 8
	case RingInUse:
		return 9
	case OnHold:
		return 16
	}
	return -1
}

// TestHintPJSIPAndStasisMatchesAsterisk22 replays the measured hint
// PJSIP/1001&Stasis:1001 (asterisk-transcripts/supplement-2/4-hint-stasis
// summary.txt, steps 1-18; 19-20 show the hint's stale value after DELETE).
func TestHintPJSIPAndStasisMatchesAsterisk22(t *testing.T) {
	for _, tc := range []struct {
		step          int
		pjsip, stasis string
		status        int
	}{
		{1, Unavailable, Unknown, 4}, {2, NotInUse, Unknown, 0}, {3, NotInUse, InUse, 1},
		{4, NotInUse, Ringing, 8}, {5, NotInUse, NotInUse, 0}, {6, NotInUse, Unavailable, 0},
		{7, Unavailable, Unavailable, 4}, {8, Unavailable, NotInUse, 0}, {9, Unavailable, InUse, 1},
		{10, Unavailable, Ringing, 8}, {11, Unavailable, Busy, 2}, {12, Unavailable, OnHold, 16},
		{13, Unavailable, RingInUse, 9}, {14, NotInUse, RingInUse, 9}, {15, NotInUse, Busy, 2},
		{16, NotInUse, OnHold, 16}, {17, NotInUse, InUse, 1}, {18, NotInUse, NotInUse, 0},
	} {
		if got := extenState(Aggregate(tc.pjsip, tc.stasis)); got != tc.status {
			t.Errorf("step %d: %s&%s gives status %d, Asterisk 22 showed %d", tc.step, tc.pjsip, tc.stasis, got, tc.status)
		}
	}
}

func TestStasisValueIsNeverUnknownOrInvalid(t *testing.T) {
	for _, s := range []string{Invalid, Unknown} {
		if got := stasisValue(s); got != Unavailable {
			t.Errorf("stasisValue(%s) = %s, want UNAVAILABLE", s, got)
		}
	}
	for _, s := range []string{Unavailable, NotInUse, OnHold, Ringing, InUse, Busy, RingInUse} {
		if got := stasisValue(s); got != s {
			t.Errorf("stasisValue(%s) = %s", s, got)
		}
	}
}
