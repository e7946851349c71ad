package finder

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
)

// realStores opens each real store implementation for t.
func realStores(t testing.TB) map[string]benchStore {
	t.Helper()
	srv := redistest.Start(t)
	rs, err := redisstore.New(context.Background(), redisstore.Config{Addrs: []string{srv.Addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	es, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Close() })
	return map[string]benchStore{"redis": rs, "embedded": es}
}

// TestTrackerToAGIThroughRealStores runs the tracker and the AGI server
// of two servers against real Redis and the embedded store: a phone
// registered on aim-a is LOCAL there and REMOTE from aim-b; it disappears
// on unregister, and aim-a stops being a location when its heartbeat ends.
func TestTrackerToAGIThroughRealStores(t *testing.T) {
	for name, st := range realStores(t) {
		t.Run(name, func(t *testing.T) {
			cfgA := testConfig()
			cfgA.HeartbeatTTL = 300 * time.Millisecond
			cfgA.EventResyncDelay = 0
			fa := newFakeAMI()
			registered := true
			var mu = make(chan struct{}, 1)
			mu <- struct{}{}
			fa.on("PJSIPShowContacts", func() (_ ami.Message, _ []ami.Message, _ error) {
				<-mu
				defer func() { mu <- struct{}{} }()
				if registered {
					c := replaceField(contactList1001, "ExpirationTime: 1795609363", "ExpirationTime: "+itoa(time.Now().Add(time.Hour).Unix()))
					return listOf(c)()
				}
				return noContacts()
			})
			tr, err := NewTracker(cfgA, TrackerDeps{AMI: fa, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = tr.Run(ctx) }()
			defer func() { cancel(); <-done }()
			waitFor(t, "ready", func() bool { return tr.Ready() == nil })

			agiA := newAGIRigOn(t, cfgA, st)
			cfgB := testConfig()
			cfgB.Server, cfgB.SIPAddr = "aim-b", "10.0.0.2:5060"
			agiB := newAGIRigOn(t, cfgB, st) // with the index (the default), following the feed
			if agiB.srv.idx == nil {
				t.Fatal("aim-b has no index")
			}
			waitFor(t, "aim-b's index loaded", func() bool { return agiB.srv.idx.tab.Load() != nil })

			want := map[*agiRig][2]string{
				agiA: {"PJSIP/1001,25,TtWw", StatusLocal},
				agiB: {"PJSIP/doorman-interserver/sip:1001@127.0.0.1:5060,25,TtWw", StatusRemote},
			}
			for r, w := range want {
				rep := call(t, r.addr, seedEnv("1001", "25", "TtWw", "1001"))
				if rep.vars[VarDialString] != w[0] || rep.vars[VarDialStatus] != w[1] {
					t.Errorf("got %q %q, want %q", rep.vars[VarDialString], rep.vars[VarDialStatus], w)
				}
			}
			locs, err := cfgB.Whereis(ctx, st, "1001", "")
			if err != nil || len(locs) != 1 || locs[0].UserAgent != "sipprobe/0.1" || locs[0].Source != "127.0.0.1:5070" {
				t.Errorf("whereis: %+v %v", locs, err)
			}

			// Unregister: the Removed event deletes it everywhere.
			<-mu
			registered = false
			mu <- struct{}{}
			fa.send(parseBlock(contactStatusRemoved))
			for r := range want {
				waitFor(t, "NOTFOUND after unregister", func() bool {
					return call(t, r.addr, scriptEnv("1001")).vars[VarDialStatus] == StatusNotFound
				})
			}

			// Register again, then Asterisk dies: within HeartbeatTTL aim-a is
			// no location any more for aim-b.
			<-mu
			registered = true
			mu <- struct{}{}
			fa.send(parseBlock(contactStatusNew))
			waitFor(t, "REMOTE again", func() bool {
				return call(t, agiB.addr, scriptEnv("1001")).vars[VarDialStatus] == StatusRemote
			})
			// Asterisk dies while another job (Busy Lamp Monitor) keeps the
			// server's heartbeat alive: the tracker withdraws its registrations.
			bctx, stopBeats := context.WithCancel(ctx)
			beats := make(chan struct{})
			go func() {
				defer close(beats)
				for bctx.Err() == nil {
					_ = st.Heartbeat(bctx, "aim-a", cfgA.HeartbeatTTL)
					select {
					case <-bctx.Done():
					case <-time.After(cfgA.HeartbeatTTL / 3):
					}
				}
			}()
			ping := fa.handler("Ping")
			fa.on("Ping", func() (ami.Message, []ami.Message, error) { return ami.Message{}, nil, errDown })
			died := time.Now()
			waitFor(t, "NOTFOUND after Asterisk died", func() bool {
				return call(t, agiB.addr, scriptEnv("1001")).vars[VarDialStatus] == StatusNotFound
			})
			if d := time.Since(died); d > 2*cfgA.HeartbeatTTL+time.Second {
				t.Errorf("dead Asterisk still a location after %v", d)
			}
			// It answers again: its contacts come back without an AMI re-login.
			fa.on("Ping", ping)
			waitFor(t, "REMOTE after Asterisk is back", func() bool {
				return call(t, agiB.addr, scriptEnv("1001")).vars[VarDialStatus] == StatusRemote
			})
			// The whole agent dies: the heartbeat lapses.
			stopBeats()
			<-beats
			cancel()
			<-done
			died = time.Now()
			waitFor(t, "NOTFOUND after the agent died", func() bool {
				return call(t, agiB.addr, scriptEnv("1001")).vars[VarDialStatus] == StatusNotFound
			})
			if d := time.Since(died); d > cfgA.HeartbeatTTL+time.Second {
				t.Errorf("dead server still a location after %v", d)
			}
		})
	}
}

func newAGIRigOn(t *testing.T, cfg Config, st benchStore) *agiRig {
	t.Helper()
	return newAGIRigWith(t, cfg, st)
}

// BenchmarkDialLocalRedis: 100,000 extensions on 10 servers in a real
// redis-server; "direct" asks Redis on every call, "index" serves from the
// in-memory index kept current by the registration feed (the default).
func BenchmarkDialLocalRedis(b *testing.B) {
	srv := redistest.Start(b)
	// Filling 10,000 registrations per server in one replace takes more
	// than the default 1 s read timeout on a loaded machine.
	rs, err := redisstore.New(context.Background(), redisstore.Config{Addrs: []string{srv.Addr}, ReadTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rs.Close() })
	fillBench(b, rs)
	for _, mode := range []struct {
		name    string
		indexed bool
	}{{"direct", false}, {"index", true}} {
		b.Run(mode.name+"/openloop2000", func(b *testing.B) { benchOpenLoop(b, rs, srv.Pid(), mode.indexed, 2000) })
		b.Run(mode.name+"/peak100", func(b *testing.B) { benchPeak(b, rs, srv.Pid(), mode.indexed, 100) })
	}
}

// BenchmarkResolveRedis measures one dialLocal decision without FastAGI:
// argument checks, the lookup and the dial string, against real Redis with
// 100,000 registrations, with and without the index.
func BenchmarkResolveRedis(b *testing.B) {
	srv := redistest.Start(b)
	rs, err := redisstore.New(context.Background(), redisstore.Config{Addrs: []string{srv.Addr}, ReadTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rs.Close() })
	fillBench(b, rs)
	for _, mode := range []struct {
		name    string
		indexed bool
	}{{"direct", false}, {"index", true}} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.Index = mode.indexed
			cfg.HeartbeatTTL = time.Hour
			s, err := NewAGIServer(cfg, AGIDeps{Store: rs})
			if err != nil {
				b.Fatal(err)
			}
			if s.idx != nil {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); s.idx.run(ctx) }()
				b.Cleanup(func() { cancel(); <-done })
				waitFor(b, "index loaded", func() bool { return s.idx.size.Load() == benchExtensions })
			}
			envs := make([]map[string]string, 1024)
			for i := range envs {
				envs[i] = map[string]string{"network_script": "dialLocal", "arg_1": itoa(int64(100000 + (i*97)%benchExtensions)),
					"arg_2": "25", "arg_3": "TtWw"}
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, st, _ := s.resolve(context.Background(), envs[i%len(envs)]); st != StatusLocal && st != StatusRemote {
						b.Errorf("status %s", st)
						return
					}
					i++
				}
			})
		})
	}
}
