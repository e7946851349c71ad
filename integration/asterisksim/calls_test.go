package asterisksim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// callPhone registers a sipua phone for ext over transport and keeps it
// answering calls until the test ends.
func callPhone(t *testing.T, s *Sim, ext, transport string, a sipua.Answering) *sipua.Phone {
	t.Helper()
	p, err := sipua.New(context.Background(), sipua.Config{Server: s.SIPAddr(), Transport: transport, User: ext,
		Password: "pw" + ext, Answering: a})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := p.Register(context.Background()); err != nil || r.Status != 200 {
		t.Fatalf("register %s: %v %v", ext, r, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close() })
	return p
}

func nextCall(t *testing.T, p *sipua.Phone) *sipua.Call {
	t.Helper()
	select {
	case c := <-p.Incoming():
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the phone got no INVITE")
		return nil
	}
}

// TestOriginatePJSIPCall: Originate of PJSIP/1001 rings the registered
// phone (RINGING), its 200 makes it INUSE with OriginateResponse Success,
// its BYE makes it NOT_INUSE; the device states come out as the control
// API's do: DeviceStateChange, ExtensionStatus and ARI DeviceStateChanged.
func TestOriginatePJSIPCall(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s := startSim(t, testConfig(t))
			p := callPhone(t, s, "1001", transport, sipua.Answering{})
			waitFor(t, "NOT_INUSE after registering", func() bool { return s.DeviceState("PJSIP/1001") == "NOT_INUSE" })
			a := dialAMI(t, s.AMIAddr())
			a.send(t, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
			a.waitContains(t, "Authentication accepted", 1)
			a.send(t, "Action: Originate\r\nActionID: o1\r\nChannel: PJSIP/1001\r\nApplication: Wait\r\nData: 30\r\n"+
				"Timeout: 60000\r\nAsync: true\r\n\r\n")
			a.waitContains(t, "Response: Success\r\nActionID: o1\r\nMessage: Originate successfully queued\r\n\r\n", 1)
			call := nextCall(t, p)
			waitFor(t, "RINGING on 180", func() bool { return s.DeviceState("PJSIP/1001") == "RINGING" })
			a.waitContains(t, "Event: DeviceStateChange\r\nPrivilege: call,all\r\nSystemName: aim-a\r\nDevice: PJSIP/1001\r\nState: RINGING\r\n\r\n", 1)
			a.waitContains(t, "Event: ExtensionStatus\r\nPrivilege: call,all\r\nSystemName: aim-a\r\nExten: 1001\r\nContext: default\r\n"+
				"Hint: PJSIP/1001&Stasis:1001\r\nStatus: 8\r\nStatusText: Ringing\r\n\r\n", 1)
			if err := call.Answer(); err != nil {
				t.Fatal(err)
			}
			a.waitContains(t, "Event: OriginateResponse\r\nPrivilege: call,all\r\nSystemName: aim-a\r\nActionID: o1\r\nResponse: Success\r\n"+
				"Channel: PJSIP/1001-", 1)
			a.waitContains(t, "\r\nContext: \r\nExten: \r\nApplication: Wait\r\nData: 30\r\nReason: 4\r\n", 1)
			if st := s.DeviceState("PJSIP/1001"); st != "INUSE" {
				t.Fatalf("after 200: %s", st)
			}
			if err := call.Hangup(context.Background()); err != nil {
				t.Fatalf("phone's BYE: %v", err)
			}
			a.waitContains(t, "Device: PJSIP/1001\r\nState: NOT_INUSE\r\n", 1)
			text := a.text()
			i, j, k := strings.Index(text, "State: RINGING"), strings.Index(text, "State: INUSE"), strings.Index(text, "State: NOT_INUSE")
			if i < 0 || j < i || k < j {
				t.Errorf("device states out of order:\n%s", text)
			}
		})
	}
}

// TestOriginatePJSIPHangupAndFailures: AMI Hangup sends BYE; Wait's end
// hangs up; a phone that is not registered, busy or declining, or does not
// answer in time, gives OriginateResponse Failure with Reason 0, 5, 8, 3.
func TestOriginatePJSIPHangupAndFailures(t *testing.T) {
	s := startSim(t, testConfig(t))
	p := callPhone(t, s, "1001", "udp", sipua.Answering{NoRinging: true})
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
	a.waitContains(t, "Authentication accepted", 1)

	// Synchronous: the answer comes once the phone answered; no RINGING.
	a.send(t, "Action: Originate\r\nActionID: s1\r\nChannel: PJSIP/1001\r\nApplication: Wait\r\nData: 30\r\n\r\n")
	call := nextCall(t, p)
	a.waitContains(t, "Response: Success\r\nActionID: s1\r\nMessage: Originate successfully queued\r\n\r\n", 1)
	// The event waits until the action's answer is written, as manager.c's do.
	a.waitContains(t, "Event: OriginateResponse", 1)
	if st := s.DeviceState("PJSIP/1001"); st != "INUSE" {
		t.Fatalf("answered at once: %s", st)
	}
	text := a.text()
	ch := text[strings.Index(text, "Channel: PJSIP/1001-")+len("Channel: ") : strings.Index(text, "Channel: PJSIP/1001-")+len("Channel: PJSIP/1001-00000000")]
	a.send(t, "Action: Hangup\r\nActionID: h1\r\nChannel: "+ch+"\r\n\r\n")
	a.waitContains(t, "Response: Success\r\nActionID: h1\r\nMessage: Channel Hungup\r\n\r\n", 1)
	<-call.Done()
	waitFor(t, "NOT_INUSE after AMI Hangup", func() bool { return s.DeviceState("PJSIP/1001") == "NOT_INUSE" })
	a.send(t, "Action: Hangup\r\nActionID: h2\r\nChannel: "+ch+"\r\n\r\n")
	a.waitContains(t, "Response: Error\r\nActionID: h2\r\nMessage: No such channel\r\n\r\n", 1)
	if strings.Contains(a.text(), "State: RINGING") {
		t.Errorf("a call answered without 180 rang:\n%s", a.text())
	}

	// Wait(0) hangs up right after the answer.
	a.send(t, "Action: Originate\r\nActionID: w1\r\nChannel: PJSIP/1001\r\nApplication: Wait\r\nData: 0\r\nAsync: yes\r\n\r\n")
	<-nextCall(t, p).Done()
	waitFor(t, "NOT_INUSE after Wait", func() bool { return s.DeviceState("PJSIP/1001") == "NOT_INUSE" })

	for _, tc := range []struct {
		id, channel string
		answering   sipua.Answering
		timeout     string
		want        string
	}{
		{"f0", "PJSIP/1002", sipua.Answering{}, "", "Channel: PJSIP/1002\r\nContext: \r\nExten: \r\nApplication: Wait\r\nData: 5\r\nReason: 0\r\nUniqueid: <null>\r\n"},
		{"f5", "PJSIP/1001", sipua.Answering{Reject: 486}, "", "Reason: 5\r\n"},
		{"f8", "PJSIP/1001", sipua.Answering{Reject: 603}, "", "Reason: 8\r\n"},
		{"f3", "PJSIP/1001", sipua.Answering{}, "Timeout: 100\r\n", "Reason: 3\r\n"},
	} {
		p.SetAnswering(tc.answering)
		a.send(t, "Action: Originate\r\nActionID: "+tc.id+"\r\nChannel: "+tc.channel+"\r\nApplication: Wait\r\nData: 5\r\n"+tc.timeout+"Async: true\r\n\r\n")
		a.waitContains(t, "Event: OriginateResponse\r\nPrivilege: call,all\r\nSystemName: aim-a\r\nActionID: "+tc.id+"\r\nResponse: Failure\r\n", 1)
		text := a.text()
		ev := text[strings.Index(text, "ActionID: "+tc.id+"\r\nResponse: Failure"):]
		ev = ev[:strings.Index(ev, "\r\n\r\n")+2]
		if !strings.Contains(ev, tc.want) {
			t.Errorf("%s: OriginateResponse %q lacks %q", tc.id, ev, tc.want)
		}
		waitFor(t, tc.id+": NOT_INUSE after the failure", func() bool { return s.DeviceState("PJSIP/1001") == "NOT_INUSE" })
	}
}
