package ami

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/measure"
)

// report adds events/s (wall) and events/cpu-s from a cpuTime taken before
// the loop.
func report(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu := measure.CPUSelf() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	}
}

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
	cpu0 := measure.CPUSelf()
	for b.Loop() {
		var m Message
		if err := p.Next(&m); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu0)
}

// BenchmarkParseSecurityEvent adds the typed decoding the Intrusion
// Monitor does for each event.
func BenchmarkParseSecurityEvent(b *testing.B) {
	body, _ := securityBody(b)
	p := NewParser(&repeatReader{body: body}, ParserLimits{})
	b.ReportAllocs()
	cpu0 := measure.CPUSelf()
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
	report(b, cpu0)
}

// BenchmarkClientEvents measures the whole client path: loopback TCP,
// parser, dispatch and a subscriber channel, one security event per
// iteration.
func BenchmarkClientEvents(b *testing.B) {
	body, n := securityBody(b)
	srv := startFake(b, func(c *fakeConn) {
		if _, ok := c.login("aim", "aimsecret"); !ok {
			return
		}
		for c.write(string(body)) {
		}
	})
	c := NewClient(testConfig(srv.addr()), nil)
	events, cancel := c.Subscribe(4096)
	defer cancel()
	runClient(b, c)
	if m := <-events; m.Event() != EventConnected {
		b.Fatalf("first message = %v", m)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body) / n))
	cpu0 := measure.CPUSelf()
	for b.Loop() {
		<-events
	}
	report(b, cpu0)
	b.ReportMetric(float64(c.Stats().EventsDropped), "dropped")
}

// BenchmarkDecodeSecurityEvent measures IsSecurityEvent + ParseSecurityEvent
// alone, on an already parsed ChallengeResponseFailed.
func BenchmarkDecodeSecurityEvent(b *testing.B) {
	msgs, _ := parseAll(b, testdata(b, "ami-security-events.txt"), true, ParserLimits{})
	var m *Message
	for i := range msgs {
		if msgs[i].Event() == "ChallengeResponseFailed" {
			m = &msgs[i]
			break
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if !IsSecurityEvent(m) {
			b.Fatal("not a security event")
		}
		if _, err := ParseSecurityEvent(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishOnEvent measures the hub's dispatch alone, one security
// event per iteration to one OnEvent function (the Intrusion Monitor's
// path in the agent), no subscriber channels.
func BenchmarkPublishOnEvent(b *testing.B) {
	msgs, _ := parseAll(b, testdata(b, "ami-security-events.txt"), true, ParserLimits{})
	var m Message
	for i := range msgs {
		if IsSecurityEvent(&msgs[i]) {
			m = msgs[i]
			break
		}
	}
	var h hub
	var n int
	defer h.onEvent(func(*Message) { n++ })()
	b.ReportAllocs()
	for b.Loop() {
		h.publish(m)
	}
	if n != b.N {
		b.Fatalf("f called %d times, want %d", n, b.N)
	}
}
