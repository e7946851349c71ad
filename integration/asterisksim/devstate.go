package asterisksim

// Device and extension states, as main/devicestate.c and main/pbx.c define them.

// deviceStates lists every state name ARI accepts, in enum order.
var deviceStates = []string{"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}

// ValidDeviceState reports whether s is an Asterisk device state name.
func ValidDeviceState(s string) bool {
	for _, d := range deviceStates {
		if d == s {
			return true
		}
	}
	return false
}

// stateRank is ast_devstate_aggregate_add's state_order table.
var stateRank = map[string]int{
	"INVALID": 0, "UNKNOWN": 1, "UNAVAILABLE": 2, "NOT_INUSE": 3, "ONHOLD": 4,
	"RINGING": 5, "INUSE": 6, "BUSY": 7, "RINGINUSE": 8,
}

// aggregate combines device states the way a hint does.
func aggregate(states []string) string {
	agg, ringing, inuse := "INVALID", false, false
	for _, s := range states {
		switch s {
		case "RINGING":
			ringing = true
		case "INUSE", "ONHOLD", "BUSY":
			inuse = true
		}
		if ringing && inuse {
			agg = "RINGINUSE"
		} else if stateRank[s] > stateRank[agg] {
			agg = s
		}
	}
	return agg
}

// Extension state bits (AST_EXTENSION_*).
const (
	extNotInUse    = 0
	extInUse       = 1
	extBusy        = 2
	extUnavailable = 4
	extRinging     = 8
	extOnHold      = 16
)

// extState is ast_devstate_to_extenstate.
func extState(dev string) int {
	switch dev {
	case "ONHOLD":
		return extOnHold
	case "BUSY":
		return extBusy
	case "UNKNOWN", "NOT_INUSE":
		return extNotInUse
	case "UNAVAILABLE", "INVALID":
		return extUnavailable
	case "RINGINUSE":
		return extInUse | extRinging
	case "RINGING":
		return extRinging
	case "INUSE":
		return extInUse
	}
	return extUnavailable
}

// extStateText is ast_extension_state2str.
func extStateText(s int) string {
	switch s {
	case extNotInUse:
		return "Idle"
	case extInUse:
		return "InUse"
	case extBusy:
		return "Busy"
	case extUnavailable:
		return "Unavailable"
	case extRinging:
		return "Ringing"
	case extInUse | extRinging:
		return "InUse&Ringing"
	case extOnHold:
		return "Hold"
	case extInUse | extOnHold:
		return "InUse&Hold"
	}
	return "Unknown"
}

// devStateText is ast_devstate_str, used by PJSIPShowEndpoints.
func devStateText(s string) string {
	switch s {
	case "NOT_INUSE":
		return "Not in use"
	case "INUSE":
		return "In use"
	case "BUSY":
		return "Busy"
	case "INVALID":
		return "Invalid"
	case "UNAVAILABLE":
		return "Unavailable"
	case "RINGING":
		return "Ringing"
	case "RINGINUSE":
		return "Ring+Inuse"
	case "ONHOLD":
		return "On Hold"
	}
	return "Unknown"
}
