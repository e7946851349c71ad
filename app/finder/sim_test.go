package finder

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	simagi "github.com/asterisksupport/doorman/integration/asterisksim/agi"
)

// TestWithSimulatedAsterisk runs dialLocal through the Asterisk simulator's
// AGI() implementation (the bytes of agi-session.txt), in both dialplan forms,
// and with the caller hanging up mid-session.
func TestWithSimulatedAsterisk(t *testing.T) {
	r := newAGIRig(t, testConfig())
	r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
	r.seed("aim-b", "2001", "sip:2001@10.9.0.1:5060")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for appData, want := range map[string][2]string{
		"agi://" + r.addr + "/dialLocal,1001,25,TtWw,1001": {"PJSIP/1001,25,TtWw", StatusLocal},
		"agi://" + r.addr + ",dialLocal,2001,25,TtWw":      {"PJSIP/doorman-interserver/sip:2001@10.0.0.2:5060,25,TtWw", StatusRemote},
		"agi://" + r.addr + "/dialLocal,4242":              {"", StatusNotFound},
		"agi://" + r.addr + "/dialLocal,1001,25,U(evil)":   {"", StatusInvalid},
	} {
		res, err := simagi.DialApp(ctx, appData, simagi.Channel{})
		if err != nil {
			t.Fatalf("%s: %v", appData, err)
		}
		if res.Status != "SUCCESS" || res.Vars[VarDialString] != want[0] || res.Vars[VarDialStatus] != want[1] {
			t.Errorf("%s: AGISTATUS=%s dialString=%q dialStatus=%q, want %q", appData, res.Status,
				res.Vars[VarDialString], res.Vars[VarDialStatus], want)
		}
	}
	// The simulator reads commands as run_agi does (poll, then fgets from a
	// stdio buffer): had the server pipelined them without ending its side,
	// the sessions would have stalled until session_timeout and counted as
	// hangups.
	waitFor(t, "sessions ended", func() bool { return r.srv.live.Load() == 0 })
	for st, n := range map[string]float64{StatusLocal: 1, StatusRemote: 1, StatusNotFound: 1, StatusInvalid: 1, statusHangup: 0} {
		if got := testutil.ToFloat64(r.srv.m.session(st)); got != n {
			t.Errorf("sessions counted as %s: %v, want %v", st, got, n)
		}
	}
	res, err := simagi.DialApp(ctx, "agi://"+r.addr+"/dialLocal,1001,25,TtWw", simagi.Channel{}, simagi.WithHangupDuring(1))
	if err != nil {
		t.Fatal(err)
	}
	// The HANGUP line comes between the two replies: the session ends as a
	// hangup (the dead channel still ran the second SET VARIABLE).
	if !res.HungUp || res.Status != "HANGUP" {
		t.Errorf("hangup during the first command: %+v", res)
	}
	waitFor(t, "sessions ended", func() bool { return r.srv.live.Load() == 0 })
	if got := testutil.ToFloat64(r.srv.m.session(statusHangup)); got != 1 {
		t.Errorf("sessions counted as hangup: %v, want 1", got)
	}
}
