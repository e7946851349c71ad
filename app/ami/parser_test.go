package ami

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseAll reads a banner (if withBanner) and every message, collecting
// syntax errors; it fails the test on any other error than io.EOF.
func parseAll(t testing.TB, data []byte, withBanner bool, lim ParserLimits) (msgs []Message, syn []*SyntaxError) {
	t.Helper()
	p := NewParser(bytes.NewReader(data), lim)
	if withBanner {
		if _, err := p.ReadBanner(); err != nil {
			t.Fatalf("banner: %v", err)
		}
	}
	for {
		var m Message
		err := p.Next(&m)
		var se *SyntaxError
		switch {
		case err == nil:
			msgs = append(msgs, m)
		case errors.As(err, &se):
			syn = append(syn, se)
		case err == io.EOF:
			return msgs, syn
		default:
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
	}
}

func countEvents(msgs []Message) map[string]int {
	n := map[string]int{}
	for i := range msgs {
		if e := msgs[i].Event(); e != "" {
			n[e]++
		} else {
			n["Response:"+msgs[i].Get("Response")]++
		}
	}
	return n
}

// wantSecurityStream is the message census of ami-security-events.txt,
// counted from the capture with grep.
var wantSecurityStream = map[string]int{
	"Response:Success": 1, "Response:Goodbye": 1, "FullyBooted": 1,
	"SuccessfulAuth": 7, "ChallengeSent": 10, "ChallengeResponseFailed": 4, "InvalidAccountID": 6, "InvalidPassword": 2,
	"PeerStatus": 6, "ContactStatus": 6, "DeviceStateChange": 13, "ExtensionStatus": 6,
	"AGIExecStart": 14, "AGIExecEnd": 14, "DialBegin": 2, "DialEnd": 2, "Hangup": 4, "HangupRequest": 2,
	"LocalBridge": 2, "Newchannel": 4, "Newexten": 6, "Newstate": 2, "SoftHangupRequest": 2, "VarSet": 16,
}

func TestParseSecurityStream(t *testing.T) {
	data := testdata(t, "ami-security-events.txt")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"CRLF", data},
		{"LF only", bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(bytes.NewReader(tc.data), ParserLimits{})
			v, err := p.ReadBanner()
			if err != nil || v != "11.0.0" {
				t.Fatalf("banner = %q, %v; want 11.0.0", v, err)
			}
			msgs, syn := parseAll(t, tc.data, true, ParserLimits{})
			if len(syn) != 0 {
				t.Fatalf("syntax errors in a clean capture: %v", syn)
			}
			if want := bytes.Count(data, []byte("\r\n\r\n")); len(msgs) != want || want != 133 {
				t.Fatalf("got %d messages, want %d (133)", len(msgs), want)
			}
			got := countEvents(msgs)
			for k, v := range wantSecurityStream {
				if got[k] != v {
					t.Errorf("%s: got %d, want %d", k, got[k], v)
				}
			}
			if len(got) != len(wantSecurityStream) {
				t.Errorf("message kinds: got %v", got)
			}
			// The first wrong-password REGISTER, field by field.
			var crf *Message
			for i := range msgs {
				if msgs[i].Event() == "ChallengeResponseFailed" {
					crf = &msgs[i]
					break
				}
			}
			want := []Field{
				{"Event", "ChallengeResponseFailed"}, {"Privilege", "security,all"}, {"SystemName", "aim-a"},
				{"EventTV", "2026-11-25T11:26:33.017+0000"}, {"Severity", "Error"}, {"Service", "PJSIP"},
				{"EventVersion", "1"}, {"AccountID", "1001"}, {"SessionID", "17287af8672f20fd@127.0.0.1"},
				{"LocalAddress", "IPV4/UDP/127.0.0.1/5060"}, {"RemoteAddress", "IPV4/UDP/127.0.0.1/5070"},
				{"Challenge", "1795605993/ee9776fa1b6e3961d905d4ba6399d371"},
				{"Response", "0fe04711351f377a2399ff8c503e214d"}, {"ExpectedResponse", ""},
			}
			if crf == nil || !equalFields(crf.Fields, want) {
				t.Fatalf("ChallengeResponseFailed = %v\nwant %v", crf, want)
			}
		})
	}
}

func equalFields(a, b []Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The reply to PJSIPShowContacts with no contacts ends "found\n\r\n\r\n": a
// bare LF, the blank line, then an extra CRLF that must not become a message.
func TestParseActionReplies(t *testing.T) {
	msgs, syn := parseAll(t, testdata(t, "ami-actions.s2c.raw"), true, ParserLimits{})
	if len(syn) != 0 {
		t.Fatalf("syntax errors: %v", syn)
	}
	if want := bytes.Count(testdata(t, "ami-actions.s2c.raw"), []byte("\r\n\r\n")); len(msgs) != want || want != 46 {
		t.Fatalf("got %d messages, want %d (46)", len(msgs), want)
	}
	for i, m := range msgs {
		if len(m.Fields) == 0 {
			t.Fatalf("message %d is empty", i)
		}
		if m.Get("ActionID") == "s1-contacts-0" {
			if m.Get("Response") != "Error" || m.Get("Message") != "No Contacts found" {
				t.Fatalf("no-contacts reply = %v", m)
			}
			if next := msgs[i+1]; next.Get("ActionID") != "s1-endpoints-unreg" || next.Get("Response") != "Success" {
				t.Fatalf("after the no-contacts reply: %v", next)
			}
		}
	}
	c := msgs[10] // first ContactList
	if c.Event() != "ContactList" || c.Get("Uri") != "sip:1001@127.0.0.1:5070" || c.Get("Path") != "" ||
		c.Get("ObjectName") != "1001;@a97f39d9e3bd3a7b0eb34acd25d64ca9" || len(c.Fields) != 21 {
		t.Fatalf("ContactList = %v", c)
	}
}

func TestParseOddInput(t *testing.T) {
	in := "Asterisk Call Manager/2.10.4\r\n" +
		"Event: A\r\nno colon here\r\nKey: v:with:colons\r\n:emptykey\r\nSpaces:    lead\r\nEmpty:\r\n\r\n" +
		"\r\n\r\n\n" + // stray blank lines
		"Event: B\nLF: only\n\n" +
		"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nName: value looking line\r\n\r\nlast line--END COMMAND--\r\n\r\n" +
		"Response: Success\r\nMessage: Command output follows\r\nOutput: a: b\r\nOutput: \r\n\r\n"
	msgs, syn := parseAll(t, []byte(in), true, ParserLimits{})
	if len(syn) != 2 || syn[0].Line != 3 || !strings.Contains(syn[0].Problem, "without a colon") ||
		syn[1].Line != 5 || !strings.Contains(syn[1].Problem, "empty key") {
		t.Fatalf("syntax errors = %v", syn)
	}
	want := [][]Field{
		{{"Event", "A"}, {"Key", "v:with:colons"}, {"Spaces", "lead"}, {"Empty", ""}},
		{{"Event", "B"}, {"LF", "only"}},
		{{"Response", "Follows"}, {"Privilege", "Command"}, {"ActionID", "7"},
			{"Output", "Name: value looking line"}, {"Output", ""}, {"Output", "last line"}},
		{{"Response", "Success"}, {"Message", "Command output follows"}, {"Output", "a: b"}, {"Output", ""}},
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages: %v", len(msgs), msgs)
	}
	for i := range want {
		if !equalFields(msgs[i].Fields, want[i]) {
			t.Errorf("message %d = %v, want %v", i, msgs[i].Fields, want[i])
		}
	}
}

func TestParseLimitsResync(t *testing.T) {
	long := strings.Repeat("x", 5000)
	in := "Event: A\r\nLong: " + long + "\r\nAfter: 1\r\n\r\n" +
		"Event: Big\r\n" + strings.Repeat("F: 0123456789\r\n", 400) + "\r\n" +
		"Event: C\r\n\r\n"
	msgs, syn := parseAll(t, []byte(in), false, ParserLimits{MaxLineBytes: 1024, MaxMessageBytes: 2048})
	if len(syn) != 2 || !strings.Contains(syn[0].Problem, "line over 1024 bytes") || syn[0].Line != 2 ||
		!strings.Contains(syn[1].Problem, "message over 2048 bytes") {
		t.Fatalf("syntax errors = %v", syn)
	}
	if len(msgs) != 2 || !equalFields(msgs[0].Fields, []Field{{"Event", "A"}, {"After", "1"}}) || msgs[1].Event() != "C" {
		t.Fatalf("messages = %v", msgs)
	}
	// Follows output that never ends, over the limit: resync at a blank line.
	msgs, syn = parseAll(t, []byte("Response: Follows\r\n"+strings.Repeat("out\r\n", 20)+"\r\nEvent: Y\r\n\r\n"), false, ParserLimits{MaxFields: 10})
	if len(syn) != 1 || len(msgs) != 1 || msgs[0].Event() != "Y" {
		t.Fatalf("follows over the limit: %v %v", msgs, syn)
	}
	// Too many fields.
	msgs, syn = parseAll(t, []byte("Event: X\r\n"+strings.Repeat("a: b\r\n", 20)+"\r\nEvent: Y\r\n\r\n"), false, ParserLimits{MaxFields: 10})
	if len(syn) != 1 || len(msgs) != 1 || msgs[0].Event() != "Y" {
		t.Fatalf("fields limit: %v %v", msgs, syn)
	}
}

func TestParseErrors(t *testing.T) {
	p := NewParser(strings.NewReader("Event: A\r\nKey: v\r\n"), ParserLimits{})
	var m Message
	if err := p.Next(&m); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated message: %v", err)
	}
	p = NewParser(strings.NewReader("Event: A\r\nKey: v"), ParserLimits{})
	if err := p.Next(&m); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated line: %v", err)
	}
	p = NewParser(strings.NewReader("\r\n\r\n"), ParserLimits{})
	if err := p.Next(&m); err != io.EOF {
		t.Fatalf("only blank lines: %v", err)
	}
	for _, banner := range []string{"SSH-2.0-OpenSSH_9.6\r\n", "", "Asterisk Call Manager/1.1"} {
		p = NewParser(strings.NewReader(banner), ParserLimits{})
		if v, err := p.ReadBanner(); err == nil {
			t.Errorf("banner %q accepted as %q", banner, v)
		}
	}
	p = NewParser(strings.NewReader(strings.Repeat("y", 200)+"\n"), ParserLimits{MaxLineBytes: 100})
	if _, err := p.ReadBanner(); err == nil || !strings.Contains(err.Error(), "line over") {
		t.Errorf("long banner: %v", err)
	}
}
