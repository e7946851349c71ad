package ami

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim"
	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// startSim runs the project's Asterisk simulator on loopback.
func startSim(t *testing.T) *asterisksim.Sim {
	t.Helper()
	sim, err := asterisksim.New(asterisksim.Config{
		SystemName: "aim-a", EntityID: "02:00:00:00:00:0a",
		AMIAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0",
		Endpoints:     map[string]string{"1001": "pw1001", "1002": "pw1002"},
		AMIUsers:      map[string]string{"aim": "aimsecret"},
		AuthFailDelay: 50 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// nextEvent returns the next event named one of names, skipping others.
func nextEvent(t *testing.T, ch <-chan Message, names ...string) Message {
	t.Helper()
	for {
		m := recv(t, ch)
		for _, n := range names {
			if m.Event() == n {
				return m
			}
		}
	}
}

// Against the simulator: plaintext and MD5 login, PJSIPShowContacts with
// none and with one contact, security events from real REGISTERs, a wrong
// AMI secret, and a reconnect after an Asterisk restart.
func TestClientAgainstSimulator(t *testing.T) {
	for _, md5 := range []bool{false, true} {
		name := "plaintext"
		if md5 {
			name = "md5"
		}
		t.Run(name, func(t *testing.T) { simScenario(t, md5) })
	}
}

func simScenario(t *testing.T, useMD5 bool) {
	sim := startSim(t)
	log, _ := testLogger(t, "aimsecret", "pw1001", "wrongpw")
	cfg := testConfig(sim.AMIAddr())
	cfg.UseMD5 = useMD5
	c := NewClient(cfg, log)
	events, cancel := c.Subscribe(1000)
	defer cancel()
	runClient(t, c)
	if m := nextEvent(t, events, EventConnected); m.Get("AMIVersion") == "" {
		t.Fatalf("connected = %v", m)
	}
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	showContacts := Message{Fields: []Field{{Key: "Action", Value: "PJSIPShowContacts"}}}

	resp, list, err := c.Action(ctx, showContacts)
	if err != nil || len(list) != 0 || resp.Get("Message") != "No Contacts found" {
		t.Fatalf("no contacts: %v %v %v", resp, list, err)
	}

	// A wrong password from its own source port.
	bad, err := sipua.New(ctx, sipua.Config{Server: sim.SIPAddr(), User: "1001", Password: "wrongpw"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if r, err := bad.Register(ctx); err != nil || r.Status != 401 {
		t.Fatalf("wrong password REGISTER: %v %v", r, err)
	}
	badAddr := netip.MustParseAddrPort(bad.LocalAddr().String())
	crf := nextEvent(t, events, "ChallengeResponseFailed")
	ev, err := ParseSecurityEvent(&crf)
	if err != nil || ev.Remote != badAddr || ev.AccountID != "1001" || ev.Service != "PJSIP" || ev.Transport != "UDP" ||
		ev.SessionID != bad.CallID() {
		t.Fatalf("ChallengeResponseFailed = %+v, %v (phone at %v)", ev, err, badAddr)
	}

	// The same over TCP: the transport and the TCP source port.
	badTCP, err := sipua.New(ctx, sipua.Config{Server: sim.SIPAddr(), Transport: "tcp", User: "1001", Password: "wrongpw"})
	if err != nil {
		t.Fatal(err)
	}
	defer badTCP.Close()
	if r, err := badTCP.Register(ctx); err != nil || r.Status != 401 {
		t.Fatalf("wrong password REGISTER over TCP: %v %v", r, err)
	}
	crf = nextEvent(t, events, "ChallengeResponseFailed")
	if ev, err = ParseSecurityEvent(&crf); err != nil || ev.Transport != "TCP" || ev.Remote != netip.MustParseAddrPort(badTCP.LocalAddr().String()) {
		t.Fatalf("ChallengeResponseFailed over TCP = %+v, %v", ev, err)
	}

	// A good registration shows in PJSIPShowContacts.
	good, err := sipua.New(ctx, sipua.Config{Server: sim.SIPAddr(), User: "1001", Password: "pw1001"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if r, err := good.Register(ctx); err != nil || r.Status != 200 {
		t.Fatalf("REGISTER: %v %v", r, err)
	}
	if m := nextEvent(t, events, "SuccessfulAuth"); !IsSecurityEvent(&m) {
		t.Fatalf("SuccessfulAuth = %v", m)
	}
	nextEvent(t, events, "ContactStatus")
	_, list, err = c.Action(ctx, showContacts)
	if err != nil || len(list) != 1 || list[0].Get("Uri") != good.ContactURI() || list[0].Get("RegServer") != "aim-a" ||
		list[0].Get("ExpirationTime") == "" {
		t.Fatalf("contacts: %v %v", list, err)
	}
	_, list, err = c.Action(ctx, Message{Fields: []Field{{Key: "Action", Value: "DeviceStateList"}}})
	found := false
	for _, d := range list {
		found = found || (d.Get("Device") == "PJSIP/1001" && d.Get("State") == "NOT_INUSE")
	}
	if err != nil || !found {
		t.Fatalf("device states: %v %v", list, err)
	}
	var ae *ActionError
	if _, _, err := c.Action(ctx, Message{Fields: []Field{{Key: "Action", Value: "Getvar"}}}); !errors.As(err, &ae) || ae.Message != "No variable specified" {
		t.Fatalf("Getvar without Variable: %v", err)
	}

	// Another manager with a wrong secret: refused, retried, and seen by
	// the first client as an AMI security event.
	wrong := testConfig(sim.AMIAddr())
	wrong.Secret, wrong.UseMD5 = "wrongsecret", useMD5
	w := NewClient(wrong, log)
	runClient(t, w)
	eventually(t, "a refused login", func() bool { return strings.Contains(w.Status().LastError, "Authentication failed") })
	want := "InvalidPassword"
	if useMD5 {
		want = "ChallengeResponseFailed"
	}
	m := nextEvent(t, events, want)
	if ev, err := ParseSecurityEvent(&m); err != nil || ev.Service != "AMI" || ev.Transport != "TCP" || !ev.Remote.Addr().IsLoopback() {
		t.Fatalf("%s = %+v, %v", want, ev, err)
	}
	if w.Connected() || w.Stats().LoginFailures == 0 {
		t.Fatalf("wrong secret: status %+v, stats %+v", w.Status(), w.Stats())
	}

	// Asterisk restarts: the client logs in again and says so.
	if err := sim.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, EventConnected)
	if st := c.Stats(); st.Logins < 2 || st.Reconnects < 1 {
		t.Fatalf("stats after restart = %+v", st)
	}
	_, list, err = c.Action(ctx, showContacts)
	if err != nil || len(list) != 0 {
		t.Fatalf("contacts after restart: %v %v", list, err)
	}
}
