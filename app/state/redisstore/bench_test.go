package redisstore_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
	"github.com/asterisksupport/doorman/integration/measure"
)

func benchStore(b *testing.B, srv *redistest.Server) *redisstore.Store {
	return open(b, redisstore.Config{Addrs: []string{srv.Addr}})
}

// BenchmarkIncr: strike counter throughput from parallel callers, with the
// CPU it costs here (client) and in redis-server.
func BenchmarkIncr(b *testing.B) {
	srv := redistest.Start(b)
	s := benchStore(b, srv)
	ctx := context.Background()
	var n sync.Mutex
	key := 0
	b.ResetTimer()
	c0, r0, t0 := measure.CPUSelf(), measure.CPUOf(srv.Pid()), time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		key++
		k := "bench-" + strconv.Itoa(key)
		n.Unlock()
		for pb.Next() {
			if _, err := s.Incr(ctx, k, time.Minute); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "ops/s")
	b.ReportMetric(float64(measure.CPUSelf()-c0)/float64(b.N)/1e3, "client-cpu-µs/op")
	b.ReportMetric(float64(measure.CPUOf(srv.Pid())-r0)/float64(b.N)/1e3, "redis-cpu-µs/op")
}

// BenchmarkDeviceStateDelivery: time from the start of PutDeviceState on one
// agent's Store to the event arriving at another agent's WatchDeviceStates.
func BenchmarkDeviceStateDelivery(b *testing.B) {
	srv := redistest.Start(b)
	writer, reader := benchStore(b, srv), benchStore(b, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := reader.WatchDeviceStates(ctx)
	if err != nil {
		b.Fatal(err)
	}
	states := []string{"INUSE", "NOT_INUSE"}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		d := state.DeviceState{Server: "a", Device: "PJSIP/1001", State: states[i%2]}
		t0 := time.Now()
		if err := writer.PutDeviceState(ctx, d); err != nil {
			b.Fatal(err)
		}
		select {
		case e := <-w:
			ds = append(ds, time.Since(t0))
			if e.State.State != d.State {
				b.Fatalf("got %+v; want %s", e, d.State)
			}
		case <-time.After(5 * time.Second):
			b.Fatalf("no event")
		}
	}
	b.StopTimer()
	measure.Report(b, ds, time.Microsecond)
}

// BenchmarkLookupAOR: 100,000 registrations across 10 servers (50,000
// AORs, each registered on two servers); one lookup at a time, then many
// callers at once.
func BenchmarkLookupAOR(b *testing.B) {
	srv := redistest.Start(b)
	s := benchStore(b, srv)
	ctx := context.Background()
	const servers, perServer, aors = 10, 10000, 50000
	statetest.LoadRegistrations(b, s, servers, perServer, aors)
	b.Run("serial", func(b *testing.B) {
		c0, r0 := measure.CPUSelf(), measure.CPUOf(srv.Pid())
		ds := statetest.LookupSerial(b, s, aors, servers*perServer/aors)
		b.ReportMetric(float64(measure.CPUSelf()-c0)/float64(b.N)/1e3, "client-cpu-µs/op")
		b.ReportMetric(float64(measure.CPUOf(srv.Pid())-r0)/float64(b.N)/1e3, "redis-cpu-µs/op")
		measure.Report(b, ds, time.Microsecond)
	})
	b.Run("parallel", func(b *testing.B) {
		var mu sync.Mutex
		all := make([]time.Duration, 0, b.N)
		t0 := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			var ds []time.Duration
			for pb.Next() {
				aor := statetest.BenchAOR(r.IntN(aors))
				t := time.Now()
				regs, err := s.LookupAOR(ctx, aor)
				ds = append(ds, time.Since(t))
				if err != nil || len(regs) != 2 {
					b.Errorf("LookupAOR %s = %d, %v", aor, len(regs), err)
					return
				}
			}
			mu.Lock()
			all = append(all, ds...)
			mu.Unlock()
		})
		b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "lookups/s")
		measure.Report(b, all, time.Microsecond)
	})
	// Open loop at the finder's target rate: request i is due at
	// start + i*100µs, and its latency counts from then (queueing included).
	b.Run("paced-10k/s", func(b *testing.B) {
		const rate = 10000
		due := make(chan time.Time, 1024)
		var mu sync.Mutex
		all := make([]time.Duration, 0, b.N)
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				var ds []time.Duration
				i := w
				for at := range due {
					aor := statetest.BenchAOR((i * 7919) % aors)
					i += 32
					regs, err := s.LookupAOR(ctx, aor)
					ds = append(ds, time.Since(at))
					if err != nil || len(regs) != 2 {
						b.Errorf("LookupAOR %s = %d, %v", aor, len(regs), err)
					}
				}
				mu.Lock()
				all = append(all, ds...)
				mu.Unlock()
			})
		}
		start := time.Now()
		for i := range b.N {
			at := start.Add(time.Duration(i) * time.Second / rate)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			due <- at
		}
		close(due)
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lookups/s")
		measure.Report(b, all, time.Microsecond)
	})
}

// BenchmarkListBans: listing 100,000 bans (what an agent does after every
// Resync).
func BenchmarkListBans(b *testing.B) {
	srv := redistest.Start(b)
	s := benchStore(b, srv)
	ctx := context.Background()
	const total = 100000
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < total; i += 16 {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				bn := state.Ban{Prefix: netip.PrefixFrom(a, 32), Reason: "bench", Server: "pbx01", Strikes: 5,
					Created: time.Now()}
				if i%2 == 0 {
					bn.Permanent = true
				} else {
					bn.Expires = time.Now().Add(time.Hour)
				}
				if err := s.PutBan(ctx, bn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("stored %d bans in %v", total, time.Since(t0))
	b.Run("100k", func(b *testing.B) {
		for range b.N {
			bans, err := s.ListBans(ctx)
			if err != nil || len(bans) != total {
				b.Fatalf("ListBans = %d, %v", len(bans), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
	})
}
