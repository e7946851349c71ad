// Package statetest is the conformance suite every state.Store
// implementation must pass, so the Redis and embedded stores behave alike.
package statetest

import (
	"context"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// Open returns a Store for test t. Each distinct t must get fresh, empty
// state; calling Open again with the same t must return another Store on
// that same state (what a second agent would see). Open registers the
// Stores' Close with t.Cleanup; the suite closes a Store itself only in
// WatchEndsOnClose, so Close must be safe to call twice.
type Open func(t *testing.T) state.Store

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, open Open) {
	t.Run("Ping", func(t *testing.T) {
		if err := open(t).Ping(ctx(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	t.Run("Incr", func(t *testing.T) { testIncr(t, open) })
	t.Run("IncrConcurrent", func(t *testing.T) { testIncrConcurrent(t, open) })
	t.Run("IncrExpires", func(t *testing.T) { testIncrExpires(t, open) })
	t.Run("BanPutListDelete", func(t *testing.T) { testBanPutListDelete(t, open) })
	t.Run("BanBadInput", func(t *testing.T) { testBanBadInput(t, open) })
	t.Run("BanExpires", func(t *testing.T) { testBanExpires(t, open) })
	t.Run("ScanBans", func(t *testing.T) { testScanBans(t, open) })
	t.Run("WatchBans", func(t *testing.T) { testWatchBans(t, open) })
	t.Run("WatchEndsWithContext", func(t *testing.T) { testWatchEnds(t, open) })
	t.Run("WatchEndsOnClose", func(t *testing.T) { testWatchEndsOnClose(t, open) })
	t.Run("Heartbeat", func(t *testing.T) { testHeartbeat(t, open) })
	t.Run("DevicePutAndWatch", func(t *testing.T) { testDevicePutWatch(t, open) })
	t.Run("DeviceReplace", func(t *testing.T) { testDeviceReplace(t, open) })
	t.Run("DeviceDeadServer", func(t *testing.T) { testDeviceDeadServer(t, open) })
	t.Run("RegistrationPutLookupDelete", func(t *testing.T) { testRegPutLookupDelete(t, open) })
	t.Run("RegistrationReplace", func(t *testing.T) { testRegReplace(t, open) })
	t.Run("RegistrationExpires", func(t *testing.T) { testRegExpires(t, open) })
	t.Run("RegistrationDeadServer", func(t *testing.T) { testRegDeadServer(t, open) })
	t.Run("RegistrationBadInput", func(t *testing.T) { testRegBadInput(t, open) })
	t.Run("WatchRegistrations", func(t *testing.T) { testWatchRegistrations(t, open) })
	t.Run("WatchRegistrationsServerDown", func(t *testing.T) { testWatchRegistrationsServerDown(t, open) })
}

// wait bounds every wait of the suite: generous, since the machine is shared.
const wait = 10 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv returns the next event of ch, failing after the deadline.
func recv[E any](t *testing.T, ch <-chan E, what string) E {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return e
	case <-time.After(wait):
		t.Fatalf("%s: no event after %v", what, wait)
	}
	var zero E
	return zero
}
