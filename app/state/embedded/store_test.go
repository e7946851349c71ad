package embedded_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

// TestConformance runs the shared suite; calls with the same t share one
// Store, as two agents would share Redis.
func TestConformance(t *testing.T) {
	for _, withFile := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "file"}[withFile], func(t *testing.T) {
			var mu sync.Mutex
			stores := map[*testing.T]*embedded.Store{}
			statetest.Run(t, func(t *testing.T) state.Store {
				mu.Lock()
				defer mu.Unlock()
				if s, ok := stores[t]; ok {
					return s
				}
				path := ""
				if withFile {
					path = filepath.Join(t.TempDir(), "state.db")
				}
				s, err := embedded.Open(path, nil)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() {
					if err := s.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
				stores[t] = s
				return s
			})
		})
	}
}

func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	perm := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Permanent: true, Reason: "r"}
	temp := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Expires: now.Add(time.Hour)}
	short := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.3/32"), Expires: now.Add(100 * time.Millisecond)}
	gone := state.Ban{Prefix: netip.MustParsePrefix("192.0.2.4/32"), Permanent: true}
	for _, b := range []state.Ban{perm, temp, short, gone} {
		if err := s.PutBan(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteBan(ctx, gone.Prefix); err != nil {
		t.Fatal(err)
	}
	r := func(srv, aor, c string, d time.Duration) state.Registration {
		return state.Registration{Server: srv, AOR: aor, Contact: c, Expires: now.Add(d)}
	}
	for _, x := range []state.Registration{r("a", "1", "sip:old", time.Hour), r("b", "1", "sip:b", time.Hour), r("b", "2", "sip:short", 100*time.Millisecond)} {
		if err := s.PutRegistration(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ReplaceRegistrations(ctx, "a", []state.Registration{r("a", "1", "sip:new", time.Hour), r("a", "3", "sip:3", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(path, nil); err == nil {
		t.Fatalf("second Open of a file in use: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBan(ctx, perm); err == nil {
		t.Fatalf("PutBan after Close: no error")
	}
	time.Sleep(150 * time.Millisecond) // let the short entries expire while "down"

	s2, err := embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	bans, err := s2.ListBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bans {
		got = append(got, b.Prefix.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"192.0.2.1/32", "192.0.2.2/32"}) {
		t.Fatalf("bans after restart = %v", got)
	}
	// Heartbeats are not saved: the servers must beat again.
	for _, srv := range []string{"a", "b"} {
		if err := s2.Heartbeat(ctx, srv, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	regs, err := s2.AllRegistrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, x := range regs {
		got = append(got, x.Server+" "+x.AOR+" "+x.Contact)
	}
	slices.Sort(got)
	if want := []string{"a 1 sip:new", "a 3 sip:3", "b 1 sip:b"}; !slices.Equal(got, want) {
		t.Fatalf("registrations after restart = %q; want %q", got, want)
	}
}

func TestOpenBadPath(t *testing.T) {
	if _, err := embedded.Open(filepath.Join(t.TempDir(), "missing-dir", "x", "state.db"), nil); err == nil {
		t.Fatalf("Open in a missing directory: no error")
	}
}

// TestSlowWatcherGetsResync: a watcher that does not read while many
// changes happen gets a Resync instead of blocking the writers.
func TestSlowWatcherGetsResync(t *testing.T) {
	s, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.WatchDeviceStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		st := []string{"INUSE", "NOT_INUSE"}[i%2]
		if err := s.PutDeviceState(ctx, state.DeviceState{Server: "a", Device: "PJSIP/1", State: st}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-w:
			if e.Kind == state.Resync {
				return
			}
		case <-deadline:
			t.Fatalf("no Resync after the watcher fell behind")
		}
	}
}

// TestRegistrationFeedResync: a watcher that falls more than the queue
// behind gets Resync rather than blocking writers.
func TestRegistrationFeedResync(t *testing.T) {
	s, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	statetest.RegistrationResync(t, s, func(t *testing.T) {
		regs := make([]state.Registration, 6000)
		for i := range regs {
			regs[i] = state.Registration{Server: "pbx-flood", AOR: fmt.Sprint(i), Contact: "sip:x@192.0.2.1", Expires: time.Now().Add(time.Hour)}
		}
		if err := s.ReplaceRegistrations(context.Background(), "pbx-flood", regs); err != nil {
			t.Fatal(err)
		}
	})
}
