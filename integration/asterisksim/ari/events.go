package ari

import (
	"fmt"
	"time"
)

// The websocket messages, with fields in the order Asterisk emits them (each
// kind is built differently inside Asterisk, hence the different orders).

type deviceStateChanged struct {
	Type        string          `json:"type"`
	Application string          `json:"application"`
	Timestamp   string          `json:"timestamp"`
	DeviceState deviceStateJSON `json:"device_state"`
	AsteriskID  string          `json:"asterisk_id"`
}

type peerJSON struct {
	PeerStatus string `json:"peer_status"`
}

type peerStatusChange struct {
	Type        string       `json:"type"`
	Timestamp   string       `json:"timestamp"`
	Endpoint    endpointJSON `json:"endpoint"`
	Peer        peerJSON     `json:"peer"`
	AsteriskID  string       `json:"asterisk_id"`
	Application string       `json:"application"`
}

type contactInfoJSON struct {
	URI           string `json:"uri"`
	ContactStatus string `json:"contact_status"`
	AOR           string `json:"aor"`
	RoundtripUsec string `json:"roundtrip_usec"`
}

type contactStatusChange struct {
	Type        string          `json:"type"`
	Timestamp   string          `json:"timestamp"`
	Endpoint    endpointJSON    `json:"endpoint"`
	ContactInfo contactInfoJSON `json:"contact_info"`
	AsteriskID  string          `json:"asterisk_id"`
	Application string          `json:"application"`
}

type endpointStateChange struct {
	Type        string       `json:"type"`
	Timestamp   string       `json:"timestamp"`
	Endpoint    endpointJSON `json:"endpoint"`
	AsteriskID  string       `json:"asterisk_id"`
	Application string       `json:"application"`
}

type applicationReplaced struct {
	Type        string `json:"type"`
	Timestamp   string `json:"timestamp"`
	Application string `json:"application"`
	AsteriskID  string `json:"asterisk_id"`
}

// encodeEvent renders e as the websocket message app receives.
func encodeEvent(e Event, app, asteriskID string) ([]byte, error) {
	ts := stamp(e.Time)
	if e.Time.IsZero() {
		ts = stamp(time.Now())
	}
	var v any
	switch e.Kind {
	case "DeviceStateChanged":
		v = deviceStateChanged{Type: e.Kind, Application: app, Timestamp: ts,
			DeviceState: deviceStateJSON{e.Device, e.State}, AsteriskID: asteriskID}
	case "PeerStatusChange":
		v = peerStatusChange{Type: e.Kind, Timestamp: ts, Endpoint: toEndpointJSON(e.Endpoint),
			Peer: peerJSON{e.PeerStatus}, AsteriskID: asteriskID, Application: app}
	case "ContactStatusChange":
		rtt := e.RoundtripUsec
		if rtt == "" {
			rtt = "0"
		}
		v = contactStatusChange{Type: e.Kind, Timestamp: ts, Endpoint: toEndpointJSON(e.Endpoint),
			ContactInfo: contactInfoJSON{e.ContactURI, e.ContactStatus, e.AOR, rtt},
			AsteriskID:  asteriskID, Application: app}
	case "EndpointStateChange":
		v = endpointStateChange{Type: e.Kind, Timestamp: ts, Endpoint: toEndpointJSON(e.Endpoint),
			AsteriskID: asteriskID, Application: app}
	default:
		return nil, fmt.Errorf("ari: unknown event kind %q", e.Kind)
	}
	return marshal(v)
}

func encodeReplaced(app, asteriskID string, now time.Time) []byte {
	b, _ := marshal(applicationReplaced{Type: "ApplicationReplaced", Timestamp: stamp(now),
		Application: app, AsteriskID: asteriskID})
	return b
}
