package measure

import (
	"os"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile reordered its input")
	}
	if Percentile(nil, 99) != 0 {
		t.Error("no samples: want 0")
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("one sample: got %v", got)
	}
}

func TestCPU(t *testing.T) {
	// Burn some CPU so both readings are above zero.
	end := time.Now().Add(30 * time.Millisecond)
	for x := 0; time.Now().Before(end); x++ {
		_ = x * x
	}
	if CPUSelf() <= 0 {
		t.Error("CPUSelf: no CPU time used")
	}
	if CPUOf(os.Getpid()) <= 0 {
		t.Error("CPUOf(self): no CPU time read from /proc")
	}
	if CPUOf(0) != 0 || CPUOf(-1) != 0 {
		t.Error("CPUOf of no process: want 0")
	}
}
