package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/integration/asterisksim"
	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
	"github.com/asterisksupport/doorman/integration/harness"
)

// The suite runs against simulators it starts itself (the default), or
// against the real Asterisk servers and doorman agents a targets file names
// (harness.TargetsEnv). Each test talks to an asterisk and to its agent's
// HTTP API; only the setup differs.

var (
	targetsOnce sync.Once
	targets     *harness.Targets
	targetsErr  error
)

// loadTargets returns the targets file's content, or nil when the suite
// runs on simulators.
func loadTargets(t testing.TB) *harness.Targets {
	t.Helper()
	targetsOnce.Do(func() {
		if p := os.Getenv(harness.TargetsEnv); p != "" {
			targets, targetsErr = harness.LoadTargets(p)
		}
	})
	if targetsErr != nil {
		t.Fatalf("%s: %v", harness.TargetsEnv, targetsErr)
	}
	return targets
}

// asterisk is what the suite does to an Asterisk server other than SIP.
// Steps with no equivalent on a real server return a skipError.
type asterisk interface {
	// setDevice changes a device state as a call would: on a real server,
	// PJSIP/<ext> needs a phone of addPhone.
	setDevice(ctx context.Context, device, state string) error
	// addPhone names the suite's phone registered for ext on this server
	// (nil: none any more); a real server calls it to set PJSIP/<ext>.
	addPhone(ext string, p *sipua.Phone)
	// device reads a device state.
	device(ctx context.Context, device string) (string, error)
	// restart restarts Asterisk; it returns once Asterisk is back.
	restart(ctx context.Context) error
	// contacts counts the registered PJSIP contacts.
	contacts(ctx context.Context) (int, error)
	// agi runs AGI() in the dialplan and returns what it left behind.
	agi(ctx context.Context, req agiRequest) (agiResult, error)
}

// skipError marks a step a real server cannot do; tests skip on it.
type skipError struct{ why string }

func (e *skipError) Error() string { return e.why }

// skipOn skips t when err is a skipError and fails it on any other error.
func skipOn(t *testing.T, what string, err error) {
	t.Helper()
	var se *skipError
	if errors.As(err, &se) {
		t.Skipf("real targets: %s: %s", what, se.why)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// agiRequest is one AGI() call: AppData as written in extensions.conf, or
// Addr (default: the agent's FastAGI address), Script and Args.
type agiRequest struct {
	AppData string   `json:"app_data,omitempty"`
	Addr    string   `json:"addr,omitempty"`
	Script  string   `json:"script,omitempty"`
	Args    []string `json:"args,omitempty"`
}

// agiResult is what the dialplan sees after AGI() returned.
type agiResult struct {
	Status    string            `json:"status"`
	Variables map[string]string `json:"variables"`
	Commands  []string          `json:"commands"`
	HungUp    bool              `json:"hung_up"`
}

func (r agiResult) dial() (dialString, dialStatus string) {
	return r.Variables["dialString"], r.Variables["dialStatus"]
}

// ---- simulator ----

// simAsterisk drives asterisk-sim through its control API, from inside the
// server's namespace.
type simAsterisk struct {
	name string
	host *harness.Host
}

func (s *simAsterisk) control(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:8089"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.host.HTTPClient(15 * time.Second).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("sim %s %s %s: %s: %s", s.name, method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (s *simAsterisk) setDevice(ctx context.Context, device, state string) error {
	return s.control(ctx, "POST", "/control/devicestate", map[string]string{"device": device, "state": state}, nil)
}

func (s *simAsterisk) addPhone(string, *sipua.Phone) {} // the control API sets states without calls

func (s *simAsterisk) device(ctx context.Context, device string) (string, error) {
	var out struct{ State string }
	err := s.control(ctx, "GET", "/control/devicestate?device="+url.QueryEscape(device), nil, &out)
	return out.State, err
}

func (s *simAsterisk) restart(ctx context.Context) error {
	return s.control(ctx, "POST", "/control/restart", nil, nil)
}

func (s *simAsterisk) contacts(ctx context.Context) (int, error) {
	var cs []map[string]any
	err := s.control(ctx, "GET", "/control/contacts", nil, &cs)
	return len(cs), err
}

func (s *simAsterisk) agi(ctx context.Context, req agiRequest) (agiResult, error) {
	var res agiResult
	err := s.control(ctx, "POST", "/control/agi", req, &res)
	return res, err
}

// ---- real server ----

// realAsterisk drives a real Asterisk through AMI and ARI, with the test
// dialplan of asterisk-conf/test-extensions.conf.
type realAsterisk struct {
	cfg     harness.TargetServer
	index   int
	ami     *ami.Client
	fastAGI string
	http    *http.Client

	mu     sync.Mutex
	phones map[string]*sipua.Phone // ext -> the suite's phone registered here
}

// newRealAsterisk logs in to the server's AMI (until the test ends).
func newRealAsterisk(t *testing.T, i int, cfg harness.TargetServer) *realAsterisk {
	t.Helper()
	r := &realAsterisk{cfg: cfg, index: i, fastAGI: cfg.Agent.FastAGI, http: &http.Client{Timeout: 10 * time.Second},
		phones: map[string]*sipua.Phone{},
		// Only the classes agi and setDevice read (call: OriginateResponse):
		// a busy server's other events would crowd the subscription.
		ami: ami.NewClient(ami.Config{Addr: cfg.AMI.Addr, Username: cfg.AMI.Username, Secret: cfg.AMI.Secret,
			Events: "agi,user,call", BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}, slog.New(slog.DiscardHandler))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.ami.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	if err := harness.Eventually(wctx, func() error {
		if !r.ami.Connected() {
			return fmt.Errorf("not logged in (%s)", r.ami.Status().LastError)
		}
		return nil
	}); err != nil {
		t.Fatalf("targets: servers[%d] (%s): AMI %s as %s: %v", i, cfg.Name, cfg.AMI.Addr, cfg.AMI.Username, err)
	}
	return r
}

func (r *realAsterisk) ari(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(r.cfg.ARI.URL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.cfg.ARI.Username, r.cfg.ARI.Password)
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s ARI %s %s: %s: %s", r.cfg.Name, method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (r *realAsterisk) addPhone(ext string, p *sipua.Phone) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p == nil {
		delete(r.phones, ext)
		return
	}
	r.phones[ext] = p
}

func (r *realAsterisk) setDevice(ctx context.Context, device, state string) error {
	if strings.HasPrefix(device, "Stasis:") {
		return r.ari(ctx, "PUT", "/deviceStates/"+url.PathEscape(device)+"?deviceState="+url.QueryEscape(state), nil)
	}
	// Only a call changes PJSIP/<ext>: Asterisk has no command for it. The
	// suite calls its own phone, which rings, answers and hangs up.
	ext, _ := strings.CutPrefix(device, "PJSIP/")
	r.mu.Lock()
	p := r.phones[ext]
	r.mu.Unlock()
	if !strings.HasPrefix(device, "PJSIP/") || p == nil {
		return &skipError{fmt.Sprintf("setting %s to %s needs a call to a phone of the suite registered on %s for it", device, state, r.cfg.Name)}
	}
	if err := r.call(ctx, ext, p, state); err != nil {
		return fmt.Errorf("%s: %s to %s by a call: %w", r.cfg.Name, device, state, err)
	}
	return harness.Eventually(ctx, func() error {
		st, err := r.device(ctx, device)
		if err == nil && st != state {
			err = fmt.Errorf("%s: %s is %s, want %s", r.cfg.Name, device, st, state)
		}
		return err
	})
}

// call brings the phone p of ext to state: RINGING is an Originate of
// PJSIP/<ext> the phone lets ring, INUSE answers it (or, from idle, an
// Originate the phone answers without ringing, so the device never shows
// RINGING), NOT_INUSE hangs up (BYE, or 603 while ringing).
func (r *realAsterisk) call(ctx context.Context, ext string, p *sipua.Phone, state string) error {
	calls := p.Calls()
	switch state {
	case "NOT_INUSE":
		for _, c := range calls {
			if err := c.Hangup(ctx); err != nil {
				return err
			}
		}
		return nil
	case "RINGING":
		for _, c := range calls {
			if c.State() == sipua.CallRinging {
				return nil
			}
		}
		for _, c := range calls { // a new call, after the one in progress
			if err := c.Hangup(ctx); err != nil {
				return err
			}
		}
		p.SetAnswering(sipua.Answering{})
	case "INUSE":
		if len(calls) > 0 {
			if c := calls[0]; c.State() == sipua.CallRinging {
				return c.Answer()
			}
			return nil // up already
		}
		p.SetAnswering(sipua.Answering{NoRinging: true})
	default:
		return &skipError{fmt.Sprintf("only RINGING, INUSE and NOT_INUSE come from a call of the suite's phone, not %s", state)}
	}
	for len(p.Incoming()) > 0 { // earlier calls nobody took
		<-p.Incoming()
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := "e2e-" + hex.EncodeToString(idb[:])
	events, unsubscribe := r.ami.Subscribe(1024)
	defer unsubscribe()
	// Wait and Timeout outlast any test: the call ends when the suite says.
	if _, _, err := r.ami.Action(ctx, ami.Message{Fields: []ami.Field{
		{Key: "Action", Value: "Originate"}, {Key: "ActionID", Value: id},
		{Key: "Channel", Value: "PJSIP/" + ext},
		{Key: "Application", Value: "Wait"}, {Key: "Data", Value: "3600"},
		{Key: "Timeout", Value: "3600000"}, {Key: "Async", Value: "true"},
	}}); err != nil {
		return fmt.Errorf("Originate PJSIP/%s: %w", ext, err)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("Originate PJSIP/%s: the phone got no INVITE: %w", ext, ctx.Err())
		case <-p.Incoming():
			return nil
		case m := <-events:
			if m.Event() == "OriginateResponse" && m.Get("ActionID") == id && m.Get("Response") != "Success" {
				return fmt.Errorf("Originate PJSIP/%s failed: Reason %s (is the phone registered here?)", ext, m.Get("Reason"))
			}
		}
	}
}

func (r *realAsterisk) device(ctx context.Context, device string) (string, error) {
	var out struct {
		State string `json:"state"`
	}
	err := r.ari(ctx, "GET", "/deviceStates/"+url.PathEscape(device), &out)
	return out.State, err
}

func (r *realAsterisk) restart(ctx context.Context) error {
	if !r.cfg.AllowRestart {
		return &skipError{fmt.Sprintf("servers[%d] (%s).allow_restart is false: restarting its Asterisk needs it", r.index, r.cfg.Name)}
	}
	logins := r.ami.Stats().Logins
	_, _, err := r.ami.Action(ctx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "Command"}, {Key: "Command", Value: "core restart now"}}})
	var ae *ami.ActionError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: core restart now: %w", r.cfg.Name, err)
	}
	// Anything else is the connection dropping under the restart. Back
	// once the client logged in again and PJSIP answers.
	return harness.Eventually(ctx, func() error {
		if r.ami.Stats().Logins == logins || !r.ami.Connected() {
			return errors.New("AMI not back yet")
		}
		_, err := r.contacts(ctx)
		return err
	})
}

func (r *realAsterisk) contacts(ctx context.Context) (int, error) {
	_, list, err := r.ami.Action(ctx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "PJSIPShowContacts"}}})
	return len(list), err
}

// agi originates Local/agi@doorman-e2e, whose dialplan runs AGI() with the
// base64 argument string E2E_AGI and raises UserEvent DoormanE2E with the
// result; the commands come from AGIExecStart events of that channel.
func (r *realAsterisk) agi(ctx context.Context, req agiRequest) (agiResult, error) {
	appData := req.AppData
	if appData == "" {
		addr := req.Addr
		if addr == "" {
			addr = r.fastAGI
		}
		appData = "agi://" + addr
		if req.Script != "" {
			appData += "/" + req.Script
		}
		for _, a := range req.Args {
			appData += "," + a
		}
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	events, unsubscribe := r.ami.Subscribe(1024)
	defer unsubscribe()
	_, _, err := r.ami.Action(ctx, ami.Message{Fields: []ami.Field{
		{Key: "Action", Value: "Originate"},
		{Key: "Channel", Value: "Local/" + asterisksim.E2EExten + "@" + asterisksim.E2EContext},
		{Key: "Application", Value: "Wait"}, {Key: "Data", Value: "30"},
		{Key: "Async", Value: "true"},
		{Key: "Variable", Value: "E2E_ID=" + id},
		{Key: "Variable", Value: "E2E_AGI=" + base64.StdEncoding.EncodeToString([]byte(appData))},
	}})
	if err != nil {
		return agiResult{}, fmt.Errorf("%s: Originate into [%s] (asterisk-conf/test-extensions.conf loaded?): %w", r.cfg.Name, asterisksim.E2EContext, err)
	}
	commands := map[string][]string{} // channel -> AGI commands
	for {
		select {
		case <-ctx.Done():
			return agiResult{}, fmt.Errorf("%s: no UserEvent DoormanE2E for %s: %w", r.cfg.Name, id, ctx.Err())
		case m := <-events:
			switch m.Event() {
			case "AGIExecStart":
				ch := m.Get("Channel")
				commands[ch] = append(commands[ch], m.Get("Command"))
			case "UserEvent":
				if m.Get("UserEvent") != "DoormanE2E" || m.Get("ID") != id {
					continue
				}
				ds, err := base64.StdEncoding.DecodeString(m.Get("dialString"))
				if err != nil {
					return agiResult{}, fmt.Errorf("%s: UserEvent dialString %q: %w", r.cfg.Name, m.Get("dialString"), err)
				}
				return agiResult{Status: m.Get("AGISTATUS"), Commands: commands[m.Get("Channel")],
					Variables: map[string]string{"dialString": string(ds), "dialStatus": m.Get("dialStatus")}}, nil
			}
		}
	}
}

// ---- clients ----

// client is a machine the suite sends SIP and AMI from: a namespace of its
// own on simulators, a local source address with real targets.
type client struct {
	name string
	host *harness.Host // nil with real targets
	addr netip.Addr
}

// client returns the client for role: a new host on simulators, the
// targets file's address otherwise (skipping t when it names none).
func (c *cluster) client(t *testing.T, role string) *client {
	t.Helper()
	if c.real != nil {
		a := c.real.Client(role)
		if a == "" {
			t.Skipf("real targets: the targets file names no clients.%s, which this step sends from", role)
		}
		return &client{name: role, addr: netip.MustParseAddr(a)}
	}
	h := c.bed.AddHost(role)
	return &client{name: role, host: h, addr: h.IPv4}
}

// do runs fn where the client's sockets must be created.
func (cl *client) do(fn func() error) error {
	if cl.host == nil {
		return fn()
	}
	return cl.host.Do(fn)
}
