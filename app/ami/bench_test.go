package ami

import (
	"bytes"
	"errors"
	"testing"
)

// securityBody is the capture's security events only, without banner or
// login reply: the Intrusion Monitor's hot path.
func securityBody(b *testing.B) (body []byte, events int) {
	b.Helper()
	msgs, _ := parseAll(b, testdata(b, "ami-security-events.txt"), true, ParserLimits{})
	var buf bytes.Buffer
	for i := range msgs {
		if !IsSecurityEvent(&msgs[i]) {
			continue
		}
		for _, f := range msgs[i].Fields {
			buf.WriteString(f.Key + ": " + f.Value + "\r\n")
		}
		buf.WriteString("\r\n")
		events++
	}
	return buf.Bytes(), events
}

// repeatReader replays body forever without allocating.
type repeatReader struct {
	body []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.body[r.off:])
	r.off = (r.off + n) % len(r.body)
	return n, nil
}

// BenchmarkParse measures the parser alone on security events, one event
// per iteration, a fresh Message each time (as the client does).
func BenchmarkParse(b *testing.B) {
	body, n := securityBody(b)
	p := NewParser(&repeatReader{body: body}, ParserLimits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(body) / n))
	for b.Loop() {
		var m Message
		if err := p.Next(&m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParseSecurityEvent adds the typed decoding the Intrusion
// Monitor does for each event.
func BenchmarkParseSecurityEvent(b *testing.B) {
	body, _ := securityBody(b)
	p := NewParser(&repeatReader{body: body}, ParserLimits{})
	b.ReportAllocs()
	for b.Loop() {
		var m Message
		if err := p.Next(&m); err != nil {
			b.Fatal(err)
		}
		if !IsSecurityEvent(&m) {
			b.Fatal("not a security event")
		}
		if _, err := ParseSecurityEvent(&m); err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
