package finder

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
)

// memStore is a fake of state.Registrations + state.Cluster with the
// documented semantics: expiry and live-server filtering on reads.
type memStore struct {
	mu       sync.Mutex
	now      func() time.Time
	regs     map[string]map[contactKey]state.Registration // server -> contacts
	beats    map[string]time.Time                         // server -> alive until
	fail     error                                        // injected for every call
	replaces int
	puts     int
	lookups  int
	byAOR    map[string][]state.Registration // lazily rebuilt after writes
}

func newMemStore() *memStore {
	return &memStore{now: time.Now, regs: map[string]map[contactKey]state.Registration{}, beats: map[string]time.Time{}}
}

func (s *memStore) beating(server string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.beats[server]
	return ok
}

func (s *memStore) replaceCount() int { s.mu.Lock(); defer s.mu.Unlock(); return s.replaces }

func (s *memStore) putCount() int { s.mu.Lock(); defer s.mu.Unlock(); return s.puts }

func (s *memStore) setFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }

func (s *memStore) PutRegistration(_ context.Context, r state.Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byAOR = nil
	if s.fail != nil {
		return s.fail
	}
	s.puts++
	if s.regs[r.Server] == nil {
		s.regs[r.Server] = map[contactKey]state.Registration{}
	}
	s.regs[r.Server][contactKey{r.AOR, r.Contact}] = r
	return nil
}

func (s *memStore) DeleteRegistration(_ context.Context, server, aor, contact string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byAOR = nil
	if s.fail != nil {
		return s.fail
	}
	delete(s.regs[server], contactKey{aor, contact})
	return nil
}

func (s *memStore) ReplaceRegistrations(_ context.Context, server string, regs []state.Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byAOR = nil
	if s.fail != nil {
		return s.fail
	}
	m := map[contactKey]state.Registration{}
	for _, r := range regs {
		if r.Server != server {
			return fmt.Errorf("registration of %s in replace for %s", r.Server, server)
		}
		m[contactKey{r.AOR, r.Contact}] = r
	}
	s.regs[server] = m
	s.replaces++
	return nil
}

func (s *memStore) live(now time.Time) []state.Registration {
	var out []state.Registration
	for server, m := range s.regs {
		if !s.beats[server].After(now) {
			continue
		}
		for _, r := range m {
			if r.Expires.After(now) {
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server+out[i].Contact < out[j].Server+out[j].Contact })
	return out
}

func (s *memStore) LookupAOR(_ context.Context, aor string) ([]state.Registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if s.fail != nil {
		return nil, s.fail
	}
	if s.byAOR == nil {
		s.byAOR = map[string][]state.Registration{}
		for _, m := range s.regs {
			for _, r := range m {
				s.byAOR[r.AOR] = append(s.byAOR[r.AOR], r)
			}
		}
	}
	now := s.now()
	var out []state.Registration
	for _, r := range s.byAOR[aor] {
		if r.Expires.After(now) && s.beats[r.Server].After(now) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *memStore) AllRegistrations(context.Context) ([]state.Registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	return s.live(s.now()), nil
}

func (s *memStore) Heartbeat(_ context.Context, server string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.beats[server] = s.now().Add(ttl)
	return nil
}

func (s *memStore) Servers(context.Context) (map[string]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range s.beats {
		if v.After(s.now()) {
			out[k] = v
		}
	}
	return out, nil
}

// contacts returns server's stored contacts (ignoring liveness) as
// "aor|uri|expires-unix|useragent" strings, sorted.
func (s *memStore) contacts(server string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.regs[server] {
		out = append(out, fmt.Sprintf("%s|%s|%d|%s", r.AOR, r.Contact, r.Expires.Unix(), r.UserAgent))
	}
	sort.Strings(out)
	return out
}

// fakeAMI is an ami.Conn whose events the test sends and whose actions
// answer from canned replies.
type fakeAMI struct {
	mu      sync.Mutex
	subs    []chan ami.Message
	actions []string
	reply   map[string]func() (ami.Message, []ami.Message, error)
}

func newFakeAMI() *fakeAMI {
	f := &fakeAMI{reply: map[string]func() (ami.Message, []ami.Message, error){}}
	f.on("Ping", func() (ami.Message, []ami.Message, error) {
		return msg("Response", "Success", "Ping", "Pong"), nil, nil
	})
	return f
}

func (f *fakeAMI) on(action string, r func() (ami.Message, []ami.Message, error)) {
	f.mu.Lock()
	f.reply[action] = r
	f.mu.Unlock()
}

func (f *fakeAMI) handler(action string) func() (ami.Message, []ami.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reply[action]
}

func (f *fakeAMI) Subscribe(buf int) (<-chan ami.Message, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan ami.Message, buf)
	f.subs = append(f.subs, ch)
	return ch, func() {}
}

func (f *fakeAMI) send(m ami.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		ch <- m
	}
}

// pending is how many sent events the subscriber has not taken yet.
func (f *fakeAMI) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, ch := range f.subs {
		n += len(ch)
	}
	return n
}

func (f *fakeAMI) subscribed() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.subs) > 0 }

func (f *fakeAMI) Action(ctx context.Context, a ami.Message) (ami.Message, []ami.Message, error) {
	name := a.Get("Action")
	f.mu.Lock()
	f.actions = append(f.actions, name)
	r := f.reply[name]
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return ami.Message{}, nil, err
	}
	if r == nil {
		return msg("Response", "Error", "Message", "Invalid/unknown command: "+name), nil, nil
	}
	return r()
}

func (f *fakeAMI) count(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.actions {
		if a == action {
			n++
		}
	}
	return n
}

var errDown = errors.New("connection refused")

// msg builds an AMI message from key, value pairs.
func msg(kv ...string) ami.Message {
	var m ami.Message
	for i := 0; i+1 < len(kv); i += 2 {
		m.Fields = append(m.Fields, ami.Field{Key: kv[i], Value: kv[i+1]})
	}
	return m
}

// parseBlock turns "Key: Value" lines (as in the transcripts) into a Message.
func parseBlock(s string) ami.Message {
	var m ami.Message
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		k, v, _ := strings.Cut(strings.TrimRight(line, "\r"), ": ")
		m.Fields = append(m.Fields, ami.Field{Key: strings.TrimSuffix(k, ":"), Value: v})
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testReg(server, aor string, expires time.Time) state.Registration {
	return state.Registration{Server: server, ServerAddr: "10.0.0.2:5060", Endpoint: aor, AOR: aor,
		Contact: "sip:" + aor + "@192.0.2.1:5060", Expires: expires, Updated: expires.Add(-time.Hour)}
}
