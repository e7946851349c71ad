// Package measure holds what the benchmarks share to report honest figures:
// the CPU time a process has used (this one or another, such as
// redis-server) and latency percentiles.
package measure

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CPUSelf returns this process's user+system CPU time.
func CPUSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUOf returns process pid's user+system CPU time from /proc, 0 if the
// process is gone or pid is not positive (a benchmark then reports 0 rather
// than failing).
func CPUOf(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from the last ")".
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, in USER_HZ (100 on Linux)
	st, _ := strconv.ParseInt(f[12], 10, 64) // stime
	return time.Duration(ut+st) * time.Second / 100
}

// Percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method, without reordering ds; 0 for no samples.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return rank(s, p)
}

func rank(sorted []time.Duration, p float64) time.Duration {
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(len(sorted)-1, i))]
}

// Report reports p50, p99 and max of ds as benchmark metrics in unit
// (time.Microsecond or time.Millisecond: metrics "p50-µs" or "p50-ms").
// It sorts ds.
func Report(b *testing.B, ds []time.Duration, unit time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	name := "ms"
	if unit == time.Microsecond {
		name = "µs"
	}
	in := func(d time.Duration) float64 { return float64(d) / float64(unit) }
	b.ReportMetric(in(rank(ds, 50)), "p50-"+name)
	b.ReportMetric(in(rank(ds, 99)), "p99-"+name)
	b.ReportMetric(in(ds[len(ds)-1]), "max-"+name)
}
