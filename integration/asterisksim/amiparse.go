package asterisksim

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// AMI input limits of main/manager.c.
const (
	amiMaxLine    = 1024 // bytes per line (inbuf)
	amiMaxHeaders = 128  // AST_MAX_MANHEADERS
)

// amiMessage is one client message: its raw header lines, in order.
type amiMessage struct {
	lines   []string
	tooLong bool // a line exceeded amiMaxLine: Asterisk drops the message silently
	hdrLoss bool // more than amiMaxHeaders lines
}

// get is astman_get_header: the first line starting with "name:"
// (case-insensitive), leading blanks of the value skipped.
func (m *amiMessage) get(name string) string {
	v, _ := m.lookup(name, false)
	return v
}

// getNonEmpty skips empty values (GET_HEADER_SKIP_EMPTY), as for Action.
func (m *amiMessage) getNonEmpty(name string) string {
	v, _ := m.lookup(name, true)
	return v
}

func (m *amiMessage) lookup(name string, skipEmpty bool) (string, bool) {
	prefix := name + ":"
	for _, l := range m.lines {
		if len(l) >= len(prefix) && strings.EqualFold(l[:len(prefix)], prefix) {
			v := strings.TrimLeft(l[len(prefix):], " \t")
			if skipEmpty && v == "" {
				continue
			}
			return v, true
		}
	}
	return "", false
}

// readAMIMessage reads lines (CRLF or bare LF) up to an empty line.
// It never fails on content; only I/O errors end it.
func readAMIMessage(r *bufio.Reader) (*amiMessage, error) {
	m := &amiMessage{}
	for {
		line, long, err := readAMILine(r)
		if err != nil {
			if errors.Is(err, io.EOF) && (len(m.lines) > 0 || m.tooLong) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if long {
			m.tooLong = true
			continue
		}
		if line == "" {
			return m, nil
		}
		if len(m.lines) < amiMaxHeaders {
			m.lines = append(m.lines, line)
		} else {
			m.hdrLoss = true
		}
	}
}

// readAMILine returns one line without its terminator; long reports that
// it was longer than amiMaxLine (the rest of it is consumed and dropped).
func readAMILine(r *bufio.Reader) (string, bool, error) {
	var b []byte
	long := false
	for {
		frag, err := r.ReadSlice('\n')
		if len(b)+len(frag) > amiMaxLine+1 {
			long = true
		} else {
			b = append(b, frag...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", false, err
		}
		break
	}
	if long {
		return "", true, nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	return s, false, nil
}
