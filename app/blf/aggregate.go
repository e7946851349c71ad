package blf

import "strings"

// Device states as Asterisk names them (main/devicestate.c).
const (
	Unknown     = "UNKNOWN"
	NotInUse    = "NOT_INUSE"
	InUse       = "INUSE"
	Busy        = "BUSY"
	Invalid     = "INVALID"
	Unavailable = "UNAVAILABLE"
	Ringing     = "RINGING"
	RingInUse   = "RINGINUSE"
	OnHold      = "ONHOLD"
)

// rank is ast_devstate_aggregate_add's state_order: INVALID < UNKNOWN <
// UNAVAILABLE < NOT_INUSE < ONHOLD < RINGING < INUSE < BUSY < RINGINUSE.
var rank = map[string]int{
	Invalid: 0, Unknown: 1, Unavailable: 2, NotInUse: 3, OnHold: 4,
	Ringing: 5, InUse: 6, Busy: 7, RingInUse: 8,
}

// KnownState reports whether s is one of the nine device states, spelled
// as Asterisk sends them.
func KnownState(s string) bool {
	_, ok := rank[s]
	return ok
}

// parseState is ast_devstate_val: case-insensitive, and anything it does
// not know is UNKNOWN.
func parseState(s string) string {
	if _, ok := rank[s]; ok {
		return s
	}
	u := strings.ToUpper(s)
	if _, ok := rank[u]; ok && u != Unknown {
		return u
	}
	return Unknown
}

// Aggregate combines device states exactly as Asterisk combines the
// devices of a hint (ast_devstate_aggregate_init/_add/_result): it starts
// at INVALID, keeps the highest-ranked state, and becomes RINGINUSE once
// one device rings while another (or the same list) is INUSE, ONHOLD or
// BUSY. No states give INVALID.
func Aggregate(states ...string) string {
	agg := Invalid
	ringing, inuse := false, false
	for _, s := range states {
		s = parseState(s)
		switch s {
		case Ringing:
			ringing = true
		case InUse, OnHold, Busy:
			inuse = true
		}
		if ringing && inuse {
			agg = RingInUse
		} else if rank[s] > rank[agg] {
			agg = s
		}
	}
	return agg
}

// stasisValue turns an aggregate into what a Stasis: state may carry:
// UNAVAILABLE is the neutral value (a registered local phone still shows
// Idle; an unregistered one Unavailable), so "nothing known" (INVALID,
// UNKNOWN) becomes UNAVAILABLE. UNKNOWN could not be written anyway.
func stasisValue(agg string) string {
	if rank[agg] < rank[Unavailable] {
		return Unavailable
	}
	return agg
}
