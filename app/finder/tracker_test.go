package finder

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
)

// Verbatim from supplement-2/1-ami-actions/ami-actions.txt (12:17:45).
const contactList1001 = `Event: ContactList
ActionID: s1-contacts-2
ObjectType: contact
ObjectName: 1001;@a97f39d9e3bd3a7b0eb34acd25d64ca9
ViaAddr: 127.0.0.1
QualifyTimeout: 3.000000
Qualify2xxOnly: false
CallId: 8798bd97a25504bd@127.0.0.1
RegServer: aim-a
PruneOnBoot: no
Path: 
Endpoint: 1001
ViaPort: 5070
AuthenticateQualify: no
Uri: sip:1001@127.0.0.1:5070
QualifyFrequency: 0
UserAgent: sipprobe/0.1
ExpirationTime: 1795609363
OutboundProxy: 
Status: NonQualified
RoundtripUsec: N/A`

const contactList1002 = `Event: ContactList
ActionID: s1-contacts-2
ObjectType: contact
ObjectName: 1002;@f19258e1221f5b9d7de33c49212265f4
ViaAddr: 127.0.0.1
QualifyTimeout: 3.000000
Qualify2xxOnly: false
CallId: 623792e35088abde@127.0.0.1
RegServer: aim-a
PruneOnBoot: no
Path: 
Endpoint: 1002
ViaPort: 5071
AuthenticateQualify: no
Uri: sip:1002@127.0.0.1:5071
QualifyFrequency: 0
UserAgent: sipprobe/0.1
ExpirationTime: 1795609363
OutboundProxy: 
Status: NonQualified
RoundtripUsec: N/A`

// Verbatim from ami-security-events.txt (register, then unregister of 1001).
const contactStatusNew = `Event: ContactStatus
Privilege: system,all
SystemName: aim-a
URI: sip:1001@127.0.0.1:5070
ContactStatus: NonQualified
AOR: 1001
EndpointName: 1001
RoundtripUsec: 0`

const contactStatusRemoved = `Event: ContactStatus
Privilege: system,all
SystemName: aim-a
URI: sip:1001@127.0.0.1:5070
ContactStatus: Removed
AOR: 1001
EndpointName: 1001
RoundtripUsec: 0`

// registeredAt is the transcript's registration time (expiry 1795609363 - 300).
var registeredAt = time.Unix(1795609063, 0)

func testConfig() Config {
	c := DefaultConfig()
	c.Server = "aim-a"
	c.SIPAddr = "127.0.0.1:5060"
	c.Listen = "127.0.0.1:0"
	return c
}

type trackerRig struct {
	t     *testing.T
	ami   *fakeAMI
	store *memStore
	tr    *Tracker
	now   atomic.Int64 // unix seconds of the fake clock
	stop  func()
}

func newTrackerRig(t *testing.T, cfg Config, contacts func() (ami.Message, []ami.Message, error)) *trackerRig {
	t.Helper()
	r := &trackerRig{t: t, ami: newFakeAMI(), store: newMemStore()}
	r.now.Store(registeredAt.Unix())
	clock := func() time.Time { return time.Unix(r.now.Load(), 0) }
	r.store.now = clock
	r.ami.on("PJSIPShowContacts", contacts)
	tr, err := NewTracker(cfg, TrackerDeps{AMI: r.ami, Store: r.store, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	r.tr = tr
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := tr.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	waitFor(t, "subscription", r.ami.subscribed)
	return r
}

func listOf(blocks ...string) func() (ami.Message, []ami.Message, error) {
	return func() (ami.Message, []ami.Message, error) {
		var l []ami.Message
		for _, b := range blocks {
			l = append(l, parseBlock(b))
		}
		return msg("Response", "Success", "EventList", "start"), l, nil
	}
}

func noContacts() (ami.Message, []ami.Message, error) {
	return msg("Response", "Error", "Message", "No Contacts found\n"), nil, nil
}

func TestTrackerResyncAtStart(t *testing.T) {
	r := newTrackerRig(t, testConfig(), listOf(contactList1001, contactList1002))
	waitFor(t, "ready", func() bool { return r.tr.Ready() == nil })
	grace := int64(testConfig().ExpiryGrace / time.Second)
	want := []string{
		"1001|sip:1001@127.0.0.1:5070|" + itoa(1795609363+grace) + "|sipprobe/0.1",
		"1002|sip:1002@127.0.0.1:5071|" + itoa(1795609363+grace) + "|sipprobe/0.1",
	}
	if got := r.store.contacts("aim-a"); !slices.Equal(got, want) {
		t.Fatalf("stored %q, want %q", got, want)
	}
	regs, _ := r.store.LookupAOR(context.Background(), "1001")
	if len(regs) != 1 || regs[0].ServerAddr != "127.0.0.1:5060" || regs[0].Source != "127.0.0.1:5070" || regs[0].Endpoint != "1001" {
		t.Fatalf("lookup 1001 = %+v", regs)
	}
}

func TestTrackerEventsAndResyncs(t *testing.T) {
	cfg := testConfig()
	cfg.EventResyncDelay = 10 * time.Millisecond
	var registered atomic.Bool
	r := newTrackerRig(t, cfg, func() (ami.Message, []ami.Message, error) {
		if registered.Load() {
			return listOf(contactList1001)()
		}
		return noContacts()
	})
	waitFor(t, "first resync", func() bool { return r.tr.Ready() == nil })
	if got := r.store.contacts("aim-a"); len(got) != 0 {
		t.Fatalf("stored %q after an empty resync", got)
	}
	resyncs := r.ami.count("PJSIPShowContacts")

	// A new contact is stored at once (provisional expiry, no user agent),
	// then a resync fills in its real expiry and user agent.
	r.ami.send(parseBlock(contactStatusNew))
	waitFor(t, "provisional contact", func() bool { return len(r.store.contacts("aim-a")) == 1 })
	registered.Store(true)
	grace := int64(cfg.ExpiryGrace / time.Second)
	want := "1001|sip:1001@127.0.0.1:5070|" + itoa(1795609363+grace) + "|sipprobe/0.1"
	waitFor(t, "resync after event", func() bool {
		c := r.store.contacts("aim-a")
		return len(c) == 1 && c[0] == want
	})
	if n := r.ami.count("PJSIPShowContacts"); n != resyncs+1 {
		t.Errorf("%d resyncs after one new contact, want 1", n-resyncs)
	}

	// A qualify status change of a known contact writes nothing.
	before := r.store.replaceCount()
	r.ami.send(parseBlock(contactStatusNew))
	r.ami.send(parseBlock(contactStatusRemoved))
	waitFor(t, "removal", func() bool { return len(r.store.contacts("aim-a")) == 0 })
	if r.store.replaceCount() != before {
		t.Errorf("known contact event caused a resync")
	}

	// Every (re)login resyncs.
	n := r.ami.count("PJSIPShowContacts")
	r.ami.send(msg("Event", ami.EventConnected))
	waitFor(t, "resync after reconnect", func() bool { return r.ami.count("PJSIPShowContacts") == n+1 })
	waitFor(t, "contact back", func() bool { return len(r.store.contacts("aim-a")) == 1 })
}

func TestTrackerSkipsForeignStaticExpiredAndMalformed(t *testing.T) {
	foreign := replaceField(contactList1002, "RegServer: aim-a", "RegServer: aim-b")
	static := replaceField(replaceField(contactList1002, "ExpirationTime: 1795609363", "ExpirationTime: 0"), "1002;@", "1003;@")
	expired := replaceField(replaceField(contactList1002, "ExpirationTime: 1795609363", "ExpirationTime: 1795609000"), "1002;@", "1004;@")
	malformed := "Event: ContactList\nObjectName: \nUri: "
	noReg := replaceField(replaceField(contactList1002, "RegServer: aim-a", "RegServer: "), "1002;@", "1005;@")
	r := newTrackerRig(t, testConfig(), listOf(contactList1001, foreign, static, expired, malformed, noReg))
	waitFor(t, "ready", func() bool { return r.tr.Ready() == nil })
	got := r.store.contacts("aim-a")
	if len(got) != 2 || got[0][:5] != "1001|" || got[1][:5] != "1005|" {
		t.Fatalf("stored %q, want 1001 and 1005 (empty RegServer means this server)", got)
	}
}

func TestTrackerHeartbeatFollowsAMI(t *testing.T) {
	cfg := testConfig()
	cfg.HeartbeatTTL = 30 * time.Millisecond
	r := newTrackerRig(t, cfg, noContacts)
	waitFor(t, "heartbeats", func() bool { return r.ami.count("Ping") >= 3 })
	if !r.store.beating("aim-a") {
		t.Fatal("no heartbeat while AMI answers")
	}
	// Asterisk stops answering: the beat stops, so the server expires.
	r.ami.on("Ping", func() (ami.Message, []ami.Message, error) { return ami.Message{}, nil, errDown })
	// A ping answered before the swap may still write its beat: pings and
	// beats run one after the other, so two more pings settle it.
	n := r.ami.count("Ping")
	waitFor(t, "a failed ping", func() bool { return r.ami.count("Ping") >= n+2 })
	r.store.mu.Lock()
	delete(r.store.beats, "aim-a")
	r.store.mu.Unlock()
	n = r.ami.count("Ping")
	waitFor(t, "more pings", func() bool { return r.ami.count("Ping") >= n+3 })
	if r.store.beating("aim-a") {
		t.Fatal("heartbeat while Asterisk does not answer")
	}
}

func TestTrackerCatchesUpAfterStoreOutage(t *testing.T) {
	cfg := testConfig()
	cfg.HeartbeatTTL = 30 * time.Millisecond
	r := newTrackerRig(t, cfg, noContacts)
	waitFor(t, "ready", func() bool { return r.tr.Ready() == nil })
	r.store.setFail(errDown)
	r.ami.send(parseBlock(contactStatusNew)) // write fails
	waitFor(t, "event handled", func() bool { return r.ami.count("Ping") > 2 })
	r.store.setFail(nil)
	waitFor(t, "catch-up push", func() bool { return len(r.store.contacts("aim-a")) == 1 })
}

func TestTrackerRetriesFailedResync(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	r := newTrackerRig(t, testConfig(), func() (ami.Message, []ami.Message, error) {
		if fail.Load() {
			return ami.Message{}, nil, errDown
		}
		return listOf(contactList1001)()
	})
	waitFor(t, "failed attempt", func() bool { return r.ami.count("PJSIPShowContacts") >= 1 })
	if r.tr.Ready() == nil {
		t.Fatal("ready after a failed resync")
	}
	fail.Store(false)
	r.ami.send(msg("Event", ami.EventConnected))
	waitFor(t, "ready after reconnect", func() bool { return r.tr.Ready() == nil })
}

func TestNewTrackerRejects(t *testing.T) {
	if _, err := NewTracker(DefaultConfig(), TrackerDeps{AMI: newFakeAMI(), Store: newMemStore()}); err == nil {
		t.Error("default config without server accepted")
	}
	if _, err := NewTracker(testConfig(), TrackerDeps{}); err == nil {
		t.Error("missing deps accepted")
	}
}

func replaceField(block, old, new string) string {
	if !strings.Contains(block, old) {
		panic("fixture lacks " + old)
	}
	return strings.Replace(block, old, new, 1)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestTrackerWritesOnlyDifferences: after the first full replace, a resync
// writes only what changed, and a refreshed expiry only when the stored one
// comes near.
func TestTrackerWritesOnlyDifferences(t *testing.T) {
	var list atomic.Value
	list.Store([]string{contactList1001, contactList1002})
	r := newTrackerRig(t, testConfig(), func() (ami.Message, []ami.Message, error) {
		return listOf(list.Load().([]string)...)()
	})
	waitFor(t, "ready", func() bool { return r.tr.Ready() == nil })
	resync := func() {
		n := r.ami.count("PJSIPShowContacts")
		r.ami.send(msg("Event", ami.EventConnected))
		waitFor(t, "resync", func() bool { return r.ami.count("PJSIPShowContacts") > n })
		// The resync is done once the next event is handled: Ping is not, so
		// use a no-op event and wait for the queue to drain.
		r.ami.send(msg("Event", "Noop"))
		waitFor(t, "drained", func() bool { return r.ami.pending() == 0 })
	}
	if r.store.replaceCount() != 1 || r.store.putCount() != 0 {
		t.Fatalf("first sync: %d replaces, %d puts", r.store.replaceCount(), r.store.putCount())
	}
	resync()
	waitFor(t, "no writes for an unchanged list", func() bool { return r.store.putCount() == 0 })

	// 1002 goes, 1001 changes its user agent (and the phone refreshed: a later expiry).
	changed := replaceField(replaceField(contactList1001, "sipprobe/0.1", "sipprobe/0.2"), "ExpirationTime: 1795609363", "ExpirationTime: 1795609400")
	list.Store([]string{changed})
	resync()
	waitFor(t, "diff written", func() bool { return len(r.store.contacts("aim-a")) == 1 && r.store.putCount() == 1 })
	if got := r.store.contacts("aim-a")[0]; !strings.HasSuffix(got, "sipprobe/0.2") || r.store.replaceCount() != 1 {
		t.Fatalf("stored %q after %d replaces", got, r.store.replaceCount())
	}

	// A refresh alone is written only once the stored expiry comes within two resync intervals.
	list.Store([]string{replaceField(changed, "ExpirationTime: 1795609400", "ExpirationTime: 1795609700")})
	resync()
	if r.store.putCount() != 1 {
		t.Fatalf("far expiry rewritten: %d puts", r.store.putCount())
	}
	r.now.Store(1795609400 + int64(testConfig().ExpiryGrace/time.Second) - 60)
	resync()
	waitFor(t, "near expiry refreshed", func() bool { return r.store.putCount() == 2 })
}

// TestLocalViewAnswersWhenStoreFails: with the tracker as LocalView, the AGI
// server answers LOCAL for this server's phones although the store is down,
// including a phone that registered during the outage.
func TestLocalViewAnswersWhenStoreFails(t *testing.T) {
	r := newTrackerRig(t, testConfig(), listOf(contactList1002))
	waitFor(t, "ready", func() bool { return r.tr.Ready() == nil })
	cfg := testConfig()
	srv, err := NewAGIServer(cfg, AGIDeps{Store: r.store, Local: r.tr})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	r.store.setFail(errDown)
	r.ami.send(parseBlock(contactStatusNew)) // 1001 registers during the outage
	waitFor(t, "1001 in the local view", func() bool {
		regs, ok := r.tr.LocalRegistrations("1001")
		return ok && len(regs) == 1
	})
	for ext, want := range map[string]string{"1001": StatusLocal, "1002": StatusLocal, "2001": StatusError} {
		rep := call(t, ln.Addr().String(), scriptEnv(ext, "25", "TtWw"))
		if rep.vars[VarDialStatus] != want {
			t.Errorf("%s with the store down: %q %q, want %s", ext, rep.vars[VarDialString], rep.vars[VarDialStatus], want)
		}
	}
	// The store back, but missing 1001 (its write failed): still LOCAL.
	r.store.setFail(nil)
	if rep := call(t, ln.Addr().String(), scriptEnv("1001")); rep.vars[VarDialString] != "PJSIP/1001" {
		t.Errorf("1001 after the outage: %q %q", rep.vars[VarDialString], rep.vars[VarDialStatus])
	}
}
