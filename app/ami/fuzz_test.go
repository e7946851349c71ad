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

// FuzzParse feeds arbitrary bytes to the parser: it must never panic or
// loop, every message must respect the limits, and a message re-encoded as
// "Key: Value" lines must parse back to the same fields.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && !strings.HasSuffix(name, ".md") {
			f.Add(b)
		}
	}
	f.Add([]byte("Asterisk Call Manager/11.0.0\nResponse: Follows\nPrivilege: Command\n\nx--END COMMAND--\n\n"))
	f.Add([]byte("Asterisk Call Manager/11.0.0\r\nResponse: Error\r\nMessage: No Contacts found\n\r\n\r\n"))
	f.Add([]byte("Event: A\r\nno colon\r\n:x\r\n\r\n"))

	lim := ParserLimits{MaxLineBytes: 256, MaxMessageBytes: 1024, MaxFields: 32}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := NewParser(bytes.NewReader(data), lim)
		_, _ = p.ReadBanner()
		for range len(data) + 2 {
			var m Message
			err := p.Next(&m)
			var se *SyntaxError
			if errors.As(err, &se) {
				continue
			}
			if err != nil {
				return
			}
			checkFuzzMessage(t, &m, lim)
		}
		// Every call consumes at least one line, so the stream must have ended.
		var m Message
		if err := p.Next(&m); err == nil {
			t.Fatalf("parser did not reach the end of %d bytes", len(data))
		}
	})
}

func checkFuzzMessage(t *testing.T, m *Message, lim ParserLimits) {
	if len(m.Fields) == 0 || len(m.Fields) > lim.MaxFields {
		t.Fatalf("message with %d fields", len(m.Fields))
	}
	size := 0
	for _, f := range m.Fields {
		size += len(f.Key) + len(f.Value)
		if f.Key == "" || strings.ContainsAny(f.Key, "\n") || strings.ContainsAny(f.Value, "\n") {
			t.Fatalf("bad field %q", f)
		}
		if strings.HasSuffix(f.Value, "\r") {
			t.Fatalf("value keeps a CR: %q", f.Value)
		}
	}
	if size > lim.MaxMessageBytes {
		t.Fatalf("message of %d bytes", size)
	}
	if isFollows([]byte(m.Fields[0].Key), []byte(m.Fields[0].Value)) {
		return // raw command output does not round-trip as Key: Value
	}
	// Round trip: keys never hold a colon outside follows mode, values
	// never start with blanks.
	var b bytes.Buffer
	for _, f := range m.Fields {
		if strings.Contains(f.Key, ":") || strings.HasPrefix(f.Value, " ") || strings.HasPrefix(f.Value, "\t") {
			t.Fatalf("field %q cannot have been parsed", f)
		}
		b.WriteString(f.Key + ": " + f.Value + "\r\n")
	}
	b.WriteString("\r\n")
	var again Message
	p := NewParser(&b, ParserLimits{MaxLineBytes: 4 * lim.MaxLineBytes, MaxMessageBytes: 4 * lim.MaxMessageBytes})
	if err := p.Next(&again); err != nil || !equalFields(again.Fields, m.Fields) {
		t.Fatalf("round trip: %v %v, want %v", err, again.Fields, m.Fields)
	}
	if err := p.Next(&again); err != io.EOF {
		t.Fatalf("round trip left data: %v", err)
	}
}

// FuzzAddress: never panics; what parses is a valid address and port
// with an upper-case transport.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{"IPV4/UDP/127.0.0.1/5070", "IPV6/UDP/2001:db8::1/5060", "IPV6/WSS/[fe80::1%eth0]/8089", "IPV4/TCP/1.2.3.4/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, ap, err := ParseAddress(s)
		if err != nil {
			return
		}
		if !ap.IsValid() || tr == "" || strings.ToUpper(tr) != tr || ap.Addr().Is4In6() {
			t.Fatalf("%q parsed as %q %v", s, tr, ap)
		}
	})
}
