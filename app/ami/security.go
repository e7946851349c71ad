package ami

import (
	"net/netip"
	"time"
)

// SecurityEvent is the part of an Asterisk security event that doorman uses.
// It deliberately omits Challenge, Response and ExpectedResponse: an AMI MD5
// failure carries the correct key in ExpectedResponse, so raw security
// events must never be logged.
type SecurityEvent struct {
	Type      string         // InvalidPassword, InvalidAccountID, ChallengeResponseFailed, ChallengeSent, SuccessfulAuth, ...
	Service   string         // PJSIP, AMI, ...
	AccountID string         // may be "<unknown>"
	SessionID string         // SIP Call-ID, or an AMI session pointer
	Transport string         // UDP, TCP, TLS, WS, WSS
	Remote    netip.AddrPort // RemoteAddress: the real packet source
	Local     netip.AddrPort // LocalAddress
	Severity  string
	Time      time.Time // EventTV, or receive time if absent
}
