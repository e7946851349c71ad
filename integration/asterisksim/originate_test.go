package asterisksim

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestOriginateLocalAGI runs the e2e context through AMI as the end-to-end
// suite does against a real Asterisk: Originate of Local/agi@doorman-e2e,
// then AGIExecStart/AGIExecEnd per command and the UserEvent with the result.
func TestOriginateLocalAGI(t *testing.T) {
	s := startSim(t, testConfig(t))
	addr := fastAGIServer(t)
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
	a.waitContains(t, "Authentication accepted", 1)
	appData := base64.StdEncoding.EncodeToString([]byte("agi://" + addr + "/dialLocal,1001,25,TtWw"))
	a.send(t, "Action: Originate\r\nActionID: o1\r\nChannel: Local/agi@doorman-e2e\r\nApplication: Wait\r\nData: 10\r\n"+
		"Async: true\r\nVariable: E2E_ID=abc\r\nVariable: E2E_AGI="+appData+"\r\n\r\n")
	a.waitContains(t, "Event: UserEvent", 1)
	text := a.text()
	for _, want := range []string{
		"Response: Success\r\nActionID: o1\r\nMessage: Originate successfully queued\r\n\r\n",
		"Event: OriginateResponse\r\nPrivilege: call,all\r\n",
		"Event: AGIExecStart\r\nPrivilege: agi,all\r\n",
		"Command: SET VARIABLE \"dialString\" \"PJSIP/1001&script=dialLocal\"\r\nCommandId: 1\r\nResultCode: 200\r\nResult: Success\r\n",
		"UserEvent: DoormanE2E\r\nID: abc\r\nAGISTATUS: SUCCESS\r\ndialStatus: \r\ndialString: " +
			base64.StdEncoding.EncodeToString([]byte("PJSIP/1001&script=dialLocal")) + "\r\n\r\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("AMI stream lacks %q:\n%s", want, text)
		}
	}
	if i, j := strings.Index(text, "Event: AGIExecEnd"), strings.Index(text, "Event: UserEvent"); i < 0 || j < i {
		t.Errorf("UserEvent before the AGI commands:\n%s", text)
	}

	// Any other Local context needs a dialplan the simulator does not have.
	a.send(t, "Action: Originate\r\nActionID: o2\r\nChannel: Local/1001@default\r\nApplication: Wait\r\n\r\n")
	a.waitContains(t, "ActionID: o2\r\nMessage: Originate failed\r\n", 1)
}

func TestCommandCoreRestart(t *testing.T) {
	s := startSim(t, testConfig(t))
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
	a.waitContains(t, "Authentication accepted", 1)
	a.send(t, "Action: Command\r\nActionID: c1\r\nCommand: core show nothing\r\n\r\n")
	a.waitContains(t, "Output: No such command 'core show nothing'", 1)
	a.send(t, "Action: Command\r\nActionID: c2\r\nCommand: core restart now\r\n\r\n")
	waitFor(t, "the restart to drop the AMI connection", a.closed)
	b := dialAMI(t, s.AMIAddr())
	b.waitContains(t, "Asterisk Call Manager", 1)
}

// TestCloseEndsLocalCall: Close hangs up a Local channel still in its AGI
// (here in EXEC Wait for an hour) and waits for its goroutine, as an Asterisk
// that exits ends its channels. Before, the call ran on for up to a minute
// after Close.
func TestCloseEndsLocalCall(t *testing.T) {
	s := startSim(t, testConfig(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	waiting := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for { // the environment, up to its empty line
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				break
			}
		}
		if _, err := io.WriteString(c, "EXEC Wait 3600\n"); err != nil {
			return
		}
		close(waiting)
		_, _ = io.Copy(io.Discard, br) // until the channel's side ends
	}()
	a := dialAMI(t, s.AMIAddr())
	a.send(t, "Action: Login\r\nUsername: aim\r\nSecret: aimsecret\r\n\r\n")
	a.waitContains(t, "Authentication accepted", 1)
	appData := base64.StdEncoding.EncodeToString([]byte("agi://" + ln.Addr().String() + "/dialLocal"))
	a.send(t, "Action: Originate\r\nActionID: o1\r\nChannel: Local/agi@doorman-e2e\r\nApplication: Wait\r\nData: 10\r\n"+
		"Async: true\r\nVariable: E2E_AGI="+appData+"\r\n\r\n")
	select {
	case <-waiting:
	case <-time.After(10 * time.Second): // a hang guard, not a speed limit
		t.Fatal("the Local channel's AGI session did not start")
	}
	if n := localCallGoroutines(); n != 1 {
		t.Fatalf("%d Local call goroutines while the call runs, want 1", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := localCallGoroutines(); n != 0 {
		t.Fatalf("%d Local call goroutines after Close, want 0", n)
	}
}

// localCallGoroutines counts the goroutines running a Local call.
func localCallGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "asterisksim.(*localCall).run")
		}
		buf = make([]byte, 2*len(buf))
	}
}
