package asterisksim

import (
	"fmt"
	"strings"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// Qualify (pjsip qualify_frequency): OPTIONS to each contact; the answers
// drive ContactStatus Reachable/Unreachable, PeerStatus and the device
// state, in the order of qualify-supplement/ami-raw.txt.

// qualifyTick sends due OPTIONS and times out unanswered ones.
func (c *core) qualifyTick() {
	if c.cfg.QualifyFrequency <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, ep := range c.endpointNames() {
		ct := c.contacts[ep]
		if ct == nil {
			continue
		}
		if !ct.probeSent.IsZero() && now.Sub(ct.probeSent) >= c.cfg.QualifyTimeout {
			ct.probeSent, ct.probeID = time.Time{}, ""
			c.contactUnreachableLocked(ct)
		}
		if ct.probeSent.IsZero() && !now.Before(ct.nextProbe) && ct.send != nil {
			ct.probeID = randUUID()
			ct.probeSent = now
			ct.nextProbe = now.Add(c.cfg.QualifyFrequency)
			ct.send(c.optionsRequest(ct))
		}
	}
}

func (c *core) optionsRequest(ct *contact) []byte {
	host, _, _ := strings.Cut(ct.localHost, ":")
	if strings.HasPrefix(ct.localHost, "[") {
		host = ct.localHost[:strings.Index(ct.localHost, "]")+1]
	}
	proto := "UDP"
	if strings.Contains(ct.Source, "/TCP/") {
		proto = "TCP"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "OPTIONS %s SIP/2.0\r\n", ct.URI)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;rport;branch=z9hG4bKPj%s\r\n", proto, ct.localHost, randUUID())
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", ct.AOR, host, randUUID())
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", ct.AOR, host)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\n", ct.AOR, ct.localHost)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", ct.probeID)
	fmt.Fprintf(&b, "CSeq: %d OPTIONS\r\n", 10000+time.Now().Nanosecond()%50000)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "User-Agent: Asterisk PBX %s\r\n", c.cfg.Version)
	b.WriteString("Content-Length:  0\r\n\r\n")
	return []byte(b.String())
}

// qualifyResponse handles a response to one of our OPTIONS.
func (c *core) qualifyResponse(m *sipMsg) {
	id := m.get("Call-ID")
	if id == "" || m.status < 200 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ct := range c.contacts {
		if ct.probeID != id || ct.probeSent.IsZero() {
			continue
		}
		rtt := c.now().Sub(ct.probeSent)
		ct.probeSent, ct.probeID = time.Time{}, ""
		c.contactReachableLocked(ct, rtt)
		return
	}
}

func (c *core) contactReachableLocked(ct *contact, rtt time.Duration) {
	prev := ct.status
	if prev == "Reachable" {
		return
	}
	ct.status = "Reachable"
	usec := fmt.Sprint(max(rtt.Microseconds(), 1))
	contactEv := event{
		ami: contactStatus(ct, "Reachable", usec),
		ari: &ari.Event{Kind: "ContactStatusChange", Time: c.now(), Endpoint: c.endpointLocked(ct.AOR), ContactURI: ct.URI, ContactStatus: "Reachable", AOR: ct.AOR, RoundtripUsec: usec},
	}
	// Captured orders: first answer ContactStatus then device; after
	// Unreachable, PeerStatus and device first, ContactStatus last.
	if prev == "Unreachable" {
		c.peerStatusLocked(ct.AOR, "Reachable")
	} else {
		c.emit(contactEv)
	}
	if c.pjsip[ct.AOR] == "UNAVAILABLE" {
		c.setDeviceLocked("PJSIP/"+ct.AOR, "NOT_INUSE", false)
	}
	if prev == "Unreachable" {
		c.emit(contactEv)
	}
}

func (c *core) contactUnreachableLocked(ct *contact) {
	if ct.status == "Unreachable" {
		return
	}
	ct.status = "Unreachable"
	c.peerStatusLocked(ct.AOR, "Unreachable")
	c.emit(event{
		ami: contactStatus(ct, "Unreachable", "0"),
		ari: &ari.Event{Kind: "ContactStatusChange", Time: c.now(), Endpoint: c.endpointLocked(ct.AOR), ContactURI: ct.URI, ContactStatus: "Unreachable", AOR: ct.AOR, RoundtripUsec: "0"},
	})
	c.setDeviceLocked("PJSIP/"+ct.AOR, "UNAVAILABLE", false)
}

// randUUID is a random version-4 UUID, as pjsip's branch, tag and Call-ID.
func randUUID() string {
	h := randHex(32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
