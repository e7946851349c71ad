package blf

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// BenchmarkRewriteAfterRestart: Asterisk restarts with every Stasis: state
// stale (astdb replay); the time from the restart until all are correct
// again. 20,000 phones on two other servers; the simulator's ARI over
// HTTP and websocket; in-memory store.
func BenchmarkRewriteAfterRestart(b *testing.B) {
	const perServer = 10000
	store := newMemStore()
	ctx := context.Background()
	want := map[string]string{}
	for _, srv := range []string{"x", "y"} {
		if err := store.Heartbeat(ctx, srv, time.Hour); err != nil {
			b.Fatal(err)
		}
		var states []state.DeviceState
		for i := range perServer {
			dev := fmt.Sprintf("PJSIP/%s%05d", srv, i)
			states = append(states, state.DeviceState{Server: srv, Device: dev, State: InUse, Updated: time.Now()})
			want["Stasis:"+dev[len("PJSIP/"):]] = InUse
		}
		if err := store.ReplaceDeviceStates(ctx, srv, states); err != nil {
			b.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	n := startNode(b, store, "a", cfg, nodeOpts{dial: dialSim(b)})
	sim := n.asterisk.(*simAsterisk)
	correct := func() bool { // cheap: the check must not slow the writes down
		have := sim.StasisStates()
		for k, v := range want {
			if have[k] != v {
				return false
			}
		}
		return true
	}
	wait := func() {
		deadline := time.Now().Add(time.Minute)
		for !correct() {
			if time.Now().After(deadline) {
				b.Fatal("Stasis: states did not converge")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait()
	stale := map[string]string{}
	for k := range want {
		stale[k] = Busy
	}
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		sim.seed(stale)
		start := time.Now()
		sim.restart()
		wait()
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rewrite")
	b.ReportMetric(float64(len(want)), "names")
}
