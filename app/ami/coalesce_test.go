package ami

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// scripted is a socket on a fake clock: chunk i arrives at at[i]; a Read
// returns everything arrived by then (up to len(b)), or "blocks" until the
// next arrival by advancing the clock.
type scripted struct {
	clock  *time.Time
	chunks []string
	at     []time.Duration // arrival after the start
	start  time.Time
	reads  int // reads that returned data
}

func (s *scripted) Read(b []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	if arr := s.start.Add(s.at[0]); s.clock.Before(arr) {
		*s.clock = arr
	}
	n := 0
	for len(s.chunks) > 0 && n < len(b) && !s.clock.Before(s.start.Add(s.at[0])) {
		k := copy(b[n:], s.chunks[0])
		n += k
		s.chunks[0] = s.chunks[0][k:]
		if s.chunks[0] == "" {
			s.chunks, s.at = s.chunks[1:], s.at[1:]
		}
	}
	s.reads++
	return n, nil
}

func TestCoalescer(t *testing.T) {
	const d = time.Millisecond
	cases := []struct {
		name   string
		at     []time.Duration
		chunks []string
		buf    int
		sleeps []time.Duration
		reads  int
	}{
		// Events 10 ms apart: read as they come, never delayed.
		{"sparse", []time.Duration{0, 10 * d, 20 * d, 30 * d}, []string{"a", "b", "c", "d"}, 8, nil, 4},
		// Events 250 µs apart: after two close reads, the next waits until
		// 1 ms after the previous one and gets the three events that came
		// meanwhile at once.
		{"dense", []time.Duration{0, 250 * time.Microsecond, 500 * time.Microsecond, 750 * time.Microsecond, 1000 * time.Microsecond},
			[]string{"a", "b", "c", "d", "e"}, 8, []time.Duration{d, d}, 3},
		// A backlog that fills the buffer is read at once.
		{"backlog", []time.Duration{0, 0, 0}, []string{"aaaaaaaa", "bbbbbbbb", "cccccccc"}, 4, nil, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			clock := start
			src := &scripted{clock: &clock, chunks: append([]string{}, tc.chunks...), at: tc.at, start: start}
			c := newCoalescer(src, d)
			var sleeps []time.Duration
			c.now = func() time.Time { return clock }
			c.sleep = func(w time.Duration) { sleeps = append(sleeps, w); clock = clock.Add(w) }
			var got bytes.Buffer
			buf := make([]byte, tc.buf)
			for {
				n, err := c.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
			}
			var want string
			for _, ch := range tc.chunks {
				want += ch
			}
			if got.String() != want {
				t.Fatalf("read %q, want %q", got.String(), want)
			}
			if src.reads != tc.reads {
				t.Fatalf("%d reads, want %d", src.reads, tc.reads)
			}
			if len(sleeps) != len(tc.sleeps) {
				t.Fatalf("waits %v, want %v", sleeps, tc.sleeps)
			}
			for i := range sleeps {
				if sleeps[i] != tc.sleeps[i] {
					t.Fatalf("waits %v, want %v", sleeps, tc.sleeps)
				}
			}
		})
	}
}
