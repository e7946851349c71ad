package ari

import (
	"time"
)

// fakeBackend is the in-memory Core with what the handler tests need on
// top: endpoint and device states set without events, events raised by
// hand, a subscriber count, and a stricter echo (see SetStasisState).
type fakeBackend struct {
	*Core
}

func newFake() *fakeBackend {
	started, _ := time.Parse(timeLayout, "2026-11-25T11:26:23.659+0000")
	c := NewCore(Info{SystemName: "aim-a", EntityID: "02:00:00:00:00:0a", Version: "GIT-22-69535d4837",
		Started: started, Reloaded: started},
		[]Endpoint{
			{Technology: "PJSIP", Resource: "1002", State: "offline"},
			{Technology: "PJSIP", Resource: "1001", State: "offline"},
		})
	c.devices["PJSIP/1001"] = "UNAVAILABLE"
	c.devices["PJSIP/1002"] = "UNAVAILABLE"
	return &fakeBackend{Core: c}
}

func (f *fakeBackend) setEndpointState(res, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.eps {
		if f.eps[i].Resource == res {
			f.eps[i].State = state
		}
	}
}

func (f *fakeBackend) setDevice(name, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[name] = state
}

// SetStasisState raises the echo while holding the lock, as a strict core
// might: the ARI callback must neither block nor call back.
func (f *fakeBackend) SetStasisState(name, state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stasis[name] = state
	f.emitLocked(Event{Kind: "DeviceStateChanged", Time: time.Now(), Device: name, State: state})
	return nil
}

func (f *fakeBackend) emit(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emitLocked(e)
}

func (f *fakeBackend) emitLocked(e Event) {
	for _, fn := range f.subs {
		fn(e)
	}
}

func (f *fakeBackend) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}
