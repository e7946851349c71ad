package ariproxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLateWritesSchedule(t *testing.T) {
	l := lateWrites{names: map[string]*lateName{}}
	t0 := time.Unix(1000, 0)
	l.taint("Stasis:1", t0)
	if d := l.due(t0.Add(2 * time.Second)); len(d) != 0 {
		t.Fatalf("nothing written since the timeout, nothing to check: %v", d)
	}
	t1 := t0.Add(3 * time.Second)
	l.wrote("Stasis:1", "INUSE", t1)
	l.wrote("Stasis:2", "BUSY", t1) // never timed out: not watched
	if d := l.due(t1.Add(500 * time.Millisecond)); len(d) != 0 {
		t.Fatalf("too early: %v", d)
	}
	for _, at := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second} {
		d := l.due(t1.Add(at))
		if len(d) != 1 || d["Stasis:1"] != "INUSE" {
			t.Fatalf("check at +%v: %v", at, d)
		}
	}
	if d := l.due(t1.Add(time.Hour)); len(d) != 0 || len(l.names) != 0 {
		t.Fatalf("still watched after the last check: %v %v", d, l.names)
	}
}

func TestMayArriveLate(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrTimeout, true},
		{context.DeadlineExceeded, true},
		{ErrNoProxy, false},
		{ErrNATSDown, false},
		{&RemoteError{Kind: "DeviceStateUpdate", Message: "ARI connection is down"}, false},
		{errors.New("nats: connection closed"), true},
	} {
		if got := mayArriveLate(tc.err); got != tc.want {
			t.Errorf("mayArriveLate(%v) = %v", tc.err, got)
		}
	}
}
