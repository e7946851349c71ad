package ami

import (
	"testing"
	"time"
)

// An OnEvent function may cancel itself, subscribe and register another
// function from inside the call: it runs outside the hub's lock. Before, each
// of these deadlocked the reader.
func TestOnEventReentrant(t *testing.T) {
	var h hub
	ev := Message{Fields: []Field{{Key: "Event", Value: "InvalidPassword"}}}
	var calls, laterCalls int
	var events <-chan Message
	var stop func()
	stop = h.onEvent(func(*Message) {
		calls++
		stop()
		events, _ = h.subscribe(4)
		h.onEvent(func(*Message) { laterCalls++ })
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.publish(ev)
		h.publish(ev)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish deadlocked on an OnEvent function that uses the hub")
	}
	if calls != 1 {
		t.Fatalf("cancelled function called %d times, want 1", calls)
	}
	if laterCalls != 1 {
		t.Fatalf("function registered during the first event called %d times, want 1 (the second event)", laterCalls)
	}
	// The channel subscribed inside f gets the same event, and the next.
	for range 2 {
		if m := recv(t, events); m.Event() != "InvalidPassword" {
			t.Fatalf("subscriber got %v", m)
		}
	}
}
