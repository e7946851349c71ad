package finder

import (
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// res_agi's reply to a command with bad syntax: several lines, one reply.
const (
	usageHead = "520-Invalid command syntax.  Proper usage follows:\n"
	usageText = " Usage: SET VARIABLE <variablename> <value>\n" +
		" Sets a variable to the current channel.\n" +
		" Example return code: 200 result=1\n"
	usageEnd = "520 End of proper usage.\n"
)

// TestSessionUsageReplyIsOneReply: a 520- usage reply answers one command,
// however many lines it has, so the session status counts what really
// happened. Before, its lines were counted as the replies to both SET
// VARIABLEs and a HANGUP after it went unseen (counted LOCAL, not hangup).
func TestSessionUsageReplyIsOneReply(t *testing.T) {
	for _, tc := range []struct {
		name, replies, status string
	}{
		{"then hangup", usageHead + usageText + usageEnd + "HANGUP\n", statusHangup},
		// The usage's last line without its newline, as when a usage text
		// does not end with one.
		{"end on the usage's line then hangup", usageHead + " Usage: SET VARIABLE <variablename> <value>" + usageEnd + "HANGUP\n", statusHangup},
		{"then the second reply", usageHead + usageText + usageEnd + "200 result=1\n", StatusLocal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newAGIRig(t, testConfig())
			r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
			c := r.startScript(t, "1001", "25", "TtWw")
			if _, err := io.ReadAll(c); err != nil { // both commands and the end of the server's side
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, tc.replies); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "session ended", func() bool { return r.srv.live.Load() == 0 })
			for _, st := range []string{statusHangup, StatusLocal} {
				want := 0.0
				if st == tc.status {
					want = 1
				}
				if n := testutil.ToFloat64(r.srv.m.session(st)); n != want {
					t.Errorf("sessions counted as %s: %v, want %v", st, n, want)
				}
			}
		})
	}
}
