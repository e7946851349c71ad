package intrusion

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := logLimit{what: "bans"}
	t0 := time.Unix(1000, 0)
	allowed := 0
	for i := range 1000 {
		if l.allow(log, t0.Add(time.Duration(i)*time.Millisecond/2)) { // 2,000 a second
			allowed++
		}
	}
	if allowed != banLogsPerSecond {
		t.Fatalf("allowed %d lines in half a second, want %d", allowed, banLogsPerSecond)
	}
	if buf.Len() != 0 {
		t.Fatalf("summary logged early: %s", buf.String())
	}
	if !l.allow(log, t0.Add(time.Second)) {
		t.Fatal("first line of the next second refused")
	}
	if out := buf.String(); !strings.Contains(out, "more bans not logged") || !strings.Contains(out, "count=980") {
		t.Fatalf("summary = %q", out)
	}
	buf.Reset()
	if !l.allow(log, t0.Add(3*time.Second)) || buf.Len() != 0 {
		t.Fatalf("quiet second: summary %q", buf.String())
	}
}
