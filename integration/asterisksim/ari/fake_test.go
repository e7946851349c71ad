package ari

import (
	"maps"
	"strings"
	"sync"
	"time"
)

// fakeBackend is a minimal simulated core: endpoints, real device states,
// astdb-like Stasis states and a synchronous event feed.
type fakeBackend struct {
	mu      sync.Mutex
	info    Info
	eps     []Endpoint
	devices map[string]string // real devices, e.g. PJSIP/1001
	stasis  map[string]string // "Stasis:1001" -> state
	subs    map[int]func(Event)
	nextSub int
}

func newFake() *fakeBackend {
	started, _ := time.Parse(timeLayout, "2026-11-25T11:26:23.659+0000")
	return &fakeBackend{
		info: Info{SystemName: "aim-a", EntityID: "02:00:00:00:00:0a", Version: "GIT-22-69535d4837",
			Started: started, Reloaded: started},
		eps: []Endpoint{
			{Technology: "PJSIP", Resource: "1002", State: "offline"},
			{Technology: "PJSIP", Resource: "1001", State: "offline"},
		},
		devices: map[string]string{"PJSIP/1001": "UNAVAILABLE", "PJSIP/1002": "UNAVAILABLE"},
		stasis:  map[string]string{},
		subs:    map[int]func(Event){},
	}
}

func (f *fakeBackend) Info() Info { f.mu.Lock(); defer f.mu.Unlock(); return f.info }

func (f *fakeBackend) Endpoints() []Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Endpoint, len(f.eps))
	for i, e := range f.eps {
		e.ChannelIDs = []string{}
		out[i] = e
	}
	return out
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

func (f *fakeBackend) DeviceState(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.stasis[name]; ok {
		return st
	}
	if strings.HasPrefix(name, "Stasis:") {
		return "UNKNOWN"
	}
	if st, ok := f.devices[name]; ok {
		return st
	}
	return "INVALID"
}

func (f *fakeBackend) StasisStates() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.stasis)
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

func (f *fakeBackend) DeleteStasisState(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stasis, name)
	return nil
}

func (f *fakeBackend) Subscribe(fn func(Event)) (cancel func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
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
