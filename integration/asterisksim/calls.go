package asterisksim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Outgoing calls of AMI Originate with Channel PJSIP/<endpoint>: an INVITE
// to the endpoint's registered contact, over the transport it registered
// on, and the device state following the call as chan_pjsip's does.
//
// No capture of a call exists in shared/asterisk-transcripts: the SIP and
// the AMI side follow Asterisk's documentation and source (manager.c
// action_originate and fast_originate, pbx_outgoing's dial reasons,
// chan_pjsip's hangup_sip2cause, ast_state_chan2dev), not recorded bytes.
// Minimal on purpose: one INVITE without retransmissions (the test beds
// lose no packets), no channel events other than OriginateResponse.

var pjsipChans atomic.Int64

// OriginateResponse reasons (AST_CONTROL_* of pbx_dial_reason).
const (
	reasonFailed     = 0 // the channel could not be requested (no contact)
	reasonHangup     = 1 // hung up before answering (AMI Hangup while ringing)
	reasonNoAnswer   = 3 // rang until the Originate's Timeout
	reasonAnswered   = 4
	reasonBusy       = 5 // 486, 600
	reasonCongestion = 8 // 603 and 5xx
)

// callState is where an outgoing call is.
type callState int

const (
	callDialing callState = iota // INVITE sent, no 18x
	callRinging                  // 180/183 received
	callUp                       // 200 received and ACKed
	callEnded
)

// pjsipCall is one channel PJSIP/<endpoint>-<n> placed by Originate.
type pjsipCall struct {
	endpoint, channel, uniqueID string
	actionID, app, data         string
	ct                          *contact // where the INVITE went
	callID, fromTag, toTag      string
	branch                      string // the INVITE's, for CANCEL and a non-2xx ACK
	cseq                        int
	target                      string // the 200's Contact: where in-dialog requests go
	state                       callState
	result                      func(ok bool) // the Originate's answer, once
	timers                      []*time.Timer
}

// originatePJSIP places the call; done runs once, with the outcome, after
// the OriginateResponse event (a synchronous Originate answers then).
func (c *core) originatePJSIP(endpoint string, m *amiMessage, done func(ok bool)) {
	timeout := 30 * time.Second
	if ms, err := strconv.Atoi(strings.TrimSpace(m.get("Timeout"))); err == nil && ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	n := pjsipChans.Add(1) - 1
	call := &pjsipCall{endpoint: endpoint, channel: fmt.Sprintf("PJSIP/%s-%08x", endpoint, n),
		uniqueID: fmt.Sprintf("%d.%d", c.now().Unix(), 2*n+1), actionID: m.get("ActionID"),
		app: m.get("Application"), data: m.get("Data"), result: done,
		callID: randUUID(), fromTag: randUUID(), branch: "z9hG4bKPj" + randUUID(), cseq: 10000 + rand.IntN(50000)}
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.contacts[endpoint]
	if ct == nil || ct.send == nil {
		// chan_pjsip cannot create a dialog without a contact: the channel
		// request fails and no channel exists.
		c.log.Warn("asterisksim: originate: endpoint has no contact", "endpoint", endpoint)
		call.state = callEnded
		c.originateResultLocked(call, reasonFailed)
		return
	}
	call.ct = ct
	c.calls[call.callID] = call
	ct.send(c.inviteLocked(call))
	call.timers = append(call.timers, time.AfterFunc(timeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls[call.callID] == call && call.state < callUp {
			c.cancelLocked(call, reasonNoAnswer)
		}
	}))
}

// originateResultLocked raises OriginateResponse (manager.c fast_originate)
// and answers a synchronous Originate.
func (c *core) originateResultLocked(call *pjsipCall, reason int) {
	ok := reason == reasonAnswered
	channel, uid := call.channel, call.uniqueID
	if call.ct == nil { // no channel was created
		channel, uid = "PJSIP/"+call.endpoint, "<null>"
	}
	c.emit(event{ami: originateResponse(call.actionID, ok, channel, "", "", call.app, call.data, reason, uid)})
	if call.result != nil {
		r := call.result
		call.result = nil
		go r(ok) // not under c.mu: it writes to an AMI connection
	}
}

// originateResponse is the OriginateResponse event of any Originate.
func originateResponse(actionID string, ok bool, channel, context, exten, app, data string, reason int, uniqueID string) *amiEvent {
	fields := []kv{}
	if actionID != "" {
		fields = append(fields, kv{"ActionID", actionID})
	}
	response := "Failure"
	if ok {
		response = "Success"
	}
	fields = append(fields, kv{"Response", response}, kv{"Channel", channel}, kv{"Context", context}, kv{"Exten", exten},
		kv{"Application", app}, kv{"Data", data}, kv{"Reason", itoa(reason)}, kv{"Uniqueid", uniqueID},
		kv{"CallerIDNum", "<unknown>"}, kv{"CallerIDName", "<unknown>"})
	return &amiEvent{name: "OriginateResponse", class: "call", fields: fields}
}

// callDeviceLocked sets PJSIP/<endpoint> from its calls, as chan_pjsip's
// device state aggregates its channels (ast_state_chan2dev: Ringing ->
// RINGING, Up -> INUSE), through the path the control API uses.
func (c *core) callDeviceLocked(endpoint string) {
	ringing, up := false, false
	for _, call := range c.calls {
		if call.endpoint != endpoint {
			continue
		}
		switch call.state {
		case callRinging:
			ringing = true
		case callUp:
			up = true
		}
	}
	st := "UNAVAILABLE"
	switch {
	case ringing && up:
		st = "RINGINUSE"
	case up:
		st = "INUSE"
	case ringing:
		st = "RINGING"
	case c.contacts[endpoint] != nil:
		st = "NOT_INUSE"
	}
	c.setDeviceLocked("PJSIP/"+endpoint, st, false)
}

// endLocked forgets a call and updates the device.
func (c *core) endCallLocked(call *pjsipCall) {
	call.state = callEnded
	for _, t := range call.timers {
		t.Stop()
	}
	delete(c.calls, call.callID)
	c.callDeviceLocked(call.endpoint)
}

// callResponse handles a response to one of our INVITE, CANCEL or BYE.
func (c *core) callResponse(m *sipMsg) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	call := c.calls[m.get("Call-ID")]
	if call == nil {
		return false
	}
	_, method, _ := strings.Cut(m.get("CSeq"), " ")
	if !strings.EqualFold(strings.TrimSpace(method), "INVITE") {
		return true // answers to CANCEL and BYE change nothing here
	}
	switch {
	case m.status < 180:
	case m.status < 200:
		if call.state == callDialing {
			call.state = callRinging
			c.callDeviceLocked(call.endpoint)
		}
	case m.status < 300:
		if to, err := parseNameAddr(m.get("To")); err == nil {
			call.toTag, _ = to.param("tag")
		}
		if ct, err := parseNameAddr(m.get("Contact")); err == nil && ct.uri != "" {
			call.target = ct.uri
		}
		call.ct.send(c.ackLocked(call, m, true)) // every 2xx, retransmissions too
		if call.state >= callUp {
			return true
		}
		call.state = callUp
		for _, t := range call.timers {
			t.Stop()
		}
		call.timers = nil
		c.callDeviceLocked(call.endpoint)
		c.originateResultLocked(call, reasonAnswered)
		if strings.EqualFold(call.app, "Wait") {
			// Wait(n) returns after n seconds and the channel hangs up.
			if secs, err := strconv.ParseFloat(strings.TrimSpace(call.data), 64); err == nil && secs >= 0 {
				call.timers = append(call.timers, time.AfterFunc(time.Duration(secs*float64(time.Second)), func() {
					c.mu.Lock()
					defer c.mu.Unlock()
					if c.calls[call.callID] == call {
						c.hangupLocked(call)
					}
				}))
			}
		}
	default:
		call.ct.send(c.ackLocked(call, m, false))
		if call.state >= callUp {
			return true
		}
		reason := reasonNoAnswer
		switch {
		case m.status == 486 || m.status == 600:
			reason = reasonBusy // AST_CAUSE_USER_BUSY
		case m.status == 603 || m.status >= 500:
			reason = reasonCongestion // AST_CAUSE_CALL_REJECTED, congestion
		case m.status == 487:
			return true // our CANCEL's outcome, reported when it was sent
		}
		c.endCallLocked(call)
		c.originateResultLocked(call, reason)
	}
	return true
}

// callBye answers a BYE from a phone: 200 and the call ends; 481 for a
// dialog we do not have (in-dialog requests are matched to their dialog
// before any authentication, as pjsip's dialog layer does).
func (s *sipServer) callBye(req *request) bool {
	if !strings.EqualFold(req.m.method, "BYE") {
		return false
	}
	to, err := parseNameAddr(req.m.get("To"))
	if err != nil {
		return false
	}
	tag, _ := to.param("tag")
	c := s.c
	c.mu.Lock()
	call := c.calls[req.callID]
	if call == nil || call.fromTag != tag {
		c.mu.Unlock()
		if tag == "" {
			return false // not in a dialog: the usual path
		}
		req.send(s.response(req, 481, "Call/Transaction Does Not Exist", nil))
		return true
	}
	c.endCallLocked(call)
	if call.result != nil { // hung up before the 200 reached us
		c.originateResultLocked(call, reasonHangup)
	}
	c.mu.Unlock()
	req.send(s.response(req, 200, "OK", nil))
	return true
}

// hangupLocked ends a call from Asterisk's side: BYE when up, CANCEL while
// it rings (AMI Hangup, the end of Wait).
func (c *core) hangupLocked(call *pjsipCall) {
	if call.state < callUp {
		c.cancelLocked(call, reasonHangup)
		return
	}
	call.cseq++
	var b strings.Builder
	c.requestLineLocked(&b, "BYE", call.target, "z9hG4bKPj"+randUUID(), call)
	fmt.Fprintf(&b, "To: <%s>;tag=%s\r\n", call.ct.URI, call.toTag)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d BYE\r\n", call.callID, call.cseq)
	b.WriteString("Reason: Q.850;cause=16\r\nMax-Forwards: 70\r\n")
	fmt.Fprintf(&b, "User-Agent: Asterisk PBX %s\r\nContent-Length:  0\r\n\r\n", c.cfg.Version)
	call.ct.send([]byte(b.String()))
	c.endCallLocked(call)
}

// cancelLocked CANCELs a call that has not been answered and reports the
// Originate's failure.
func (c *core) cancelLocked(call *pjsipCall, reason int) {
	var b strings.Builder
	c.requestLineLocked(&b, "CANCEL", call.ct.URI, call.branch, call)
	fmt.Fprintf(&b, "To: <%s>\r\n", call.ct.URI)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d CANCEL\r\nMax-Forwards: 70\r\n", call.callID, call.cseq)
	fmt.Fprintf(&b, "User-Agent: Asterisk PBX %s\r\nContent-Length:  0\r\n\r\n", c.cfg.Version)
	call.ct.send([]byte(b.String()))
	c.endCallLocked(call)
	c.originateResultLocked(call, reason)
}

// requestLineLocked writes a request's first lines: request line, Via, From.
func (c *core) requestLineLocked(b *strings.Builder, method, uri, branch string, call *pjsipCall) {
	fmt.Fprintf(b, "%s %s SIP/2.0\r\n", method, uri)
	fmt.Fprintf(b, "Via: SIP/2.0/%s %s;rport;branch=%s\r\n", call.ct.proto(), call.ct.localHost, branch)
	fmt.Fprintf(b, "From: <sip:asterisk@%s>;tag=%s\r\n", call.ct.ourHost(), call.fromTag)
}

// inviteLocked is the INVITE of a new call, with an SDP offer of PCMU.
func (c *core) inviteLocked(call *pjsipCall) []byte {
	ct := call.ct
	host := ct.ourHost()
	family := "IP4"
	if strings.HasPrefix(host, "[") {
		family, host = "IP6", strings.Trim(host, "[]")
	}
	sess := strconv.FormatInt(c.now().Unix(), 10)
	sdp := fmt.Sprintf("v=0\r\no=- %s %s IN %s %s\r\ns=Asterisk\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"+
		"a=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n", sess, sess, family, host, family, host, 10000+2*rand.IntN(5000))
	var b strings.Builder
	c.requestLineLocked(&b, "INVITE", ct.URI, call.branch, call)
	fmt.Fprintf(&b, "To: <%s>\r\n", ct.URI)
	fmt.Fprintf(&b, "Contact: <sip:asterisk@%s>\r\n", ct.localHost)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d INVITE\r\n", call.callID, call.cseq)
	b.WriteString("Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER\r\n")
	b.WriteString("Supported: 100rel, timer, replaces, norefersub, histinfo\r\nSession-Expires: 1800\r\nMin-SE: 90\r\nMax-Forwards: 70\r\n")
	fmt.Fprintf(&b, "User-Agent: Asterisk PBX %s\r\nContent-Type: application/sdp\r\nContent-Length:   %d\r\n\r\n%s", c.cfg.Version, len(sdp), sdp)
	return []byte(b.String())
}

// ackLocked acknowledges a final response to the INVITE: a 2xx with a new
// transaction to the remote target, anything else in the INVITE's.
func (c *core) ackLocked(call *pjsipCall, m *sipMsg, ok bool) []byte {
	uri, branch := call.ct.URI, call.branch
	if ok {
		branch = "z9hG4bKPj" + randUUID()
		if call.target != "" {
			uri = call.target
		}
	}
	var b strings.Builder
	c.requestLineLocked(&b, "ACK", uri, branch, call)
	b.WriteString("To: " + m.get("To") + "\r\n")
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d ACK\r\nMax-Forwards: 70\r\n", call.callID, call.cseq)
	fmt.Fprintf(&b, "User-Agent: Asterisk PBX %s\r\nContent-Length:  0\r\n\r\n", c.cfg.Version)
	return []byte(b.String())
}

// proto is the contact's transport as a Via names it.
func (ct *contact) proto() string {
	if strings.Contains(ct.Source, "/TCP/") {
		return "TCP"
	}
	return "UDP"
}

// ourHost is our address as the phone reached it, without the port.
func (ct *contact) ourHost() string {
	if strings.HasPrefix(ct.localHost, "[") {
		return ct.localHost[:strings.Index(ct.localHost, "]")+1]
	}
	host, _, _ := strings.Cut(ct.localHost, ":")
	return host
}

// hangupAction is AMI Hangup (manager.c ast_manager_hangup_helper) for the
// channels the simulator has: the PJSIP calls of Originate.
func (s *amiSession) hangupAction(m *amiMessage) bool {
	name := m.get("Channel")
	if name == "" {
		return s.write(resp(m, "Error", "No channel specified"))
	}
	c := s.c
	c.mu.Lock()
	var found *pjsipCall
	for _, call := range c.calls {
		if call.channel == name {
			found = call
		}
	}
	if found != nil {
		c.hangupLocked(found)
	}
	c.mu.Unlock()
	if found == nil {
		return s.write(resp(m, "Error", "No such channel"))
	}
	return s.write(resp(m, "Success", "Channel Hungup"))
}
