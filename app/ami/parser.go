package ami

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Parser limits. A line or message over its limit is skipped with a
// *SyntaxError and the parser resynchronises on the next line or message.
const (
	DefaultMaxLineBytes    = 16 << 10
	DefaultMaxMessageBytes = 1 << 20
	DefaultMaxFields       = 8192
	minLineBytes           = 64
)

// bannerPrefix starts the line Asterisk sends when a client connects.
const bannerPrefix = "Asterisk Call Manager/"

// endCommand ends the raw output of an old-style "Response: Follows" reply.
const endCommand = "--END COMMAND--"

// SyntaxError reports a malformed part of the stream that the parser skipped.
// It is not fatal: call Next again. It never quotes the offending bytes, so
// it is safe to log.
type SyntaxError struct {
	Line    int    // 1-based line number in the stream
	Problem string // what was wrong and what was skipped
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("ami: line %d: %s", e.Line, e.Problem)
}

// Parser reads AMI messages from a stream: the banner line, then
// "Key: Value" lines, each message ended by an empty line. CRLF and bare LF
// line ends are both accepted.
type Parser struct {
	r               *bufio.Reader
	maxLine, maxMsg int
	maxFields       int
	line            int

	// The message being read: its keys and values back to back in buf,
	// and their offsets in spans, so a finished message costs one string
	// and one []Field.
	buf     []byte
	spans   []span
	follows bool // inside the raw output of a "Response: Follows" reply
	output  bool // follows-mode output has started
	discard bool // message over its limit: skipping to its end
}

type span struct{ k0, k1, v0, v1 int }

// ParserLimits bounds what one line and one message may hold; zero fields
// take the defaults.
type ParserLimits struct {
	MaxLineBytes    int
	MaxMessageBytes int
	MaxFields       int
}

// NewParser returns a parser reading from r with the given limits.
func NewParser(r io.Reader, lim ParserLimits) *Parser {
	if lim.MaxLineBytes <= 0 {
		lim.MaxLineBytes = DefaultMaxLineBytes
	}
	lim.MaxLineBytes = max(lim.MaxLineBytes, minLineBytes)
	if lim.MaxMessageBytes <= 0 {
		lim.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if lim.MaxFields <= 0 {
		lim.MaxFields = DefaultMaxFields
	}
	return &Parser{
		r:         bufio.NewReaderSize(r, lim.MaxLineBytes),
		maxLine:   lim.MaxLineBytes,
		maxMsg:    lim.MaxMessageBytes,
		maxFields: lim.MaxFields,
		buf:       make([]byte, 0, 1024),
		spans:     make([]span, 0, 32),
	}
}

// ReadBanner reads the first line, "Asterisk Call Manager/<version>", and
// returns the version.
func (p *Parser) ReadBanner() (string, error) {
	line, err := p.readLine()
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return "", fmt.Errorf("ami: banner: %s", se.Problem)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("ami: reading banner: %w", err)
	}
	s := string(line)
	if !strings.HasPrefix(s, bannerPrefix) {
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return "", fmt.Errorf("ami: unexpected banner %q (want %q...)", s, bannerPrefix)
	}
	return strings.TrimSpace(s[len(bannerPrefix):]), nil
}

// Next reads the next message into m, replacing m.Fields (its backing array
// is reused when large enough; the strings never alias parser memory).
// Empty lines between messages are skipped. A *SyntaxError means a bad line
// or an over-long line or message was skipped: call Next again. Any other
// error comes from the reader (io.EOF at a message boundary,
// io.ErrUnexpectedEOF inside a message) and ends the stream.
func (p *Parser) Next(m *Message) error {
	for {
		line, err := p.readLine()
		if err != nil {
			if err == io.EOF && (len(p.spans) > 0 || p.discard) {
				p.reset()
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if p.follows {
			if serr := p.followsLine(line); serr != nil {
				return serr
			}
			continue
		}
		if len(line) == 0 {
			if p.discard {
				p.reset()
				continue
			}
			if len(p.spans) == 0 {
				continue // extra blank line between messages (seen after "No Contacts found")
			}
			p.emit(m)
			return nil
		}
		if p.discard {
			continue
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return p.syntax("line without a colon skipped")
		}
		if i == 0 {
			return p.syntax("line with an empty key skipped")
		}
		v := i + 1
		for v < len(line) && (line[v] == ' ' || line[v] == '\t') {
			v++
		}
		if err := p.add(line[:i], line[v:]); err != nil {
			return err
		}
		if len(p.spans) == 1 && isFollows(line[:i], line[v:]) {
			p.follows, p.output = true, false
		}
	}
}

// followsLine handles one line of an old-style command reply
// ("Response: Follows", Asterisk 1.4 to 11): raw output lines, blank ones
// included, up to "--END COMMAND--", each kept as an Output field.
func (p *Parser) followsLine(line []byte) error {
	if p.discard {
		// Over the limit: a blank line resyncs too, so output that never
		// says "--END COMMAND--" cannot swallow the stream.
		if len(line) == 0 {
			p.reset()
		} else if bytes.HasSuffix(line, []byte(endCommand)) {
			p.follows = false
		}
		return nil
	}
	if out, ok := bytes.CutSuffix(line, []byte(endCommand)); ok {
		p.follows = false
		out = bytes.TrimRight(out, "\r")
		if len(out) > 0 {
			return p.add([]byte("Output"), out)
		}
		return nil
	}
	if !p.output {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && (bytes.EqualFold(k, []byte("Privilege")) || bytes.EqualFold(k, []byte("ActionID"))) {
			return p.add(k, bytes.TrimLeft(v, " \t"))
		}
		p.output = true
	}
	return p.add([]byte("Output"), line)
}

func isFollows(k, v []byte) bool {
	return bytes.EqualFold(k, []byte("Response")) && bytes.EqualFold(v, []byte("Follows"))
}

// add appends one field to the message being read, or starts discarding it
// when it grows past the limits.
func (p *Parser) add(k, v []byte) error {
	if len(p.buf)+len(k)+len(v) > p.maxMsg || len(p.spans) >= p.maxFields {
		p.discard = true
		p.buf, p.spans = p.buf[:0], p.spans[:0]
		return p.syntax(fmt.Sprintf("message over %d bytes or %d fields skipped to its end", p.maxMsg, p.maxFields))
	}
	var s span
	s.k0 = len(p.buf)
	p.buf = append(p.buf, k...)
	s.k1 = len(p.buf)
	s.v0 = s.k1
	p.buf = append(p.buf, v...)
	s.v1 = len(p.buf)
	p.spans = append(p.spans, s)
	return nil
}

func (p *Parser) emit(m *Message) {
	all := string(p.buf)
	if cap(m.Fields) >= len(p.spans) {
		m.Fields = m.Fields[:len(p.spans)]
	} else {
		m.Fields = make([]Field, len(p.spans))
	}
	for i, s := range p.spans {
		m.Fields[i] = Field{Key: all[s.k0:s.k1], Value: all[s.v0:s.v1]}
	}
	p.reset()
}

func (p *Parser) reset() {
	p.buf, p.spans = p.buf[:0], p.spans[:0]
	p.follows, p.output, p.discard = false, false, false
	// Do not keep a huge buffer alive after one big message.
	if cap(p.buf) > 64<<10 {
		p.buf = make([]byte, 0, 1024)
	}
}

func (p *Parser) syntax(problem string) error {
	return &SyntaxError{Line: p.line, Problem: problem}
}

// readLine returns the next line without its line end. The slice is valid
// until the next read. An over-long line is consumed and reported as a
// *SyntaxError.
func (p *Parser) readLine() ([]byte, error) {
	line, err := p.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.line++
		for err == bufio.ErrBufferFull {
			_, err = p.r.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		return nil, p.syntax(fmt.Sprintf("line over %d bytes skipped", p.maxLine))
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	p.line++
	line = line[:len(line)-1]
	for len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}
