package protowarn

import (
	"bytes"
	"testing"
)

func TestFilter(t *testing.T) {
	var b bytes.Buffer
	f := filter{&b}
	for _, line := range []string{"2026/11/25 proto: duplicate proto type registered: asterisk.ari.Key\n", "redis: dial failed\n"} {
		if n, err := f.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.String() != "redis: dial failed\n" {
		t.Fatalf("passed on %q", b.String())
	}
}
