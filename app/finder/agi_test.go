package finder

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
)

type agiRig struct {
	store *memStore  // the fake, when the rig uses it
	st    benchStore // the store seed writes to
	srv   *AGIServer
	addr  string
	stop  func()
}

// seed stores a registration of aor on server (addr 10.0.0.x:5060 for
// remote servers) that expires in an hour, and makes server alive.
func (r *agiRig) seed(server, aor, contact string) {
	addr := "127.0.0.1:5060"
	switch server {
	case "aim-b":
		addr = "10.0.0.2:5060"
	case "aim-c":
		addr = "[2001:db8::3]:5060"
	}
	ctx := context.Background()
	_ = r.st.Heartbeat(ctx, server, time.Hour)
	_ = r.st.PutRegistration(ctx, state.Registration{Server: server, ServerAddr: addr, Endpoint: aor, AOR: aor,
		Contact: contact, Expires: time.Now().Add(time.Hour), Updated: time.Now()})
}

func newAGIRig(t *testing.T, cfg Config) *agiRig {
	t.Helper()
	st := newMemStore()
	r := newAGIRigWith(t, cfg, st)
	r.store, r.st = st, st
	return r
}

// newIndexedRig serves dialLocal with the index, on an embedded store that
// seed fills first, and returns once the index has loaded.
func newIndexedRig(t *testing.T, cfg Config, seed func(r *agiRig)) *agiRig {
	t.Helper()
	es, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Close() })
	cfg.Index = true
	seed(&agiRig{st: es})
	r := newAGIRigWith(t, cfg, es)
	r.st = es
	if r.srv.idx == nil {
		t.Fatal("no index on the embedded store")
	}
	waitFor(t, "index loaded", func() bool { return r.srv.idx.tab.Load() != nil })
	return r
}

// newAGIRigWith serves dialLocal for st on a free loopback port.
func newAGIRigWith(t *testing.T, cfg Config, st state.Registrations) *agiRig {
	t.Helper()
	r := &agiRig{}
	srv, err := NewAGIServer(cfg, AGIDeps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	ln, err := Listen(context.Background(), "127.0.0.1:0") // as Run does
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func call(t *testing.T, addr string, env []byte) agiReply {
	t.Helper()
	rep, err := agiCall(addr, env)
	if err != nil {
		t.Fatalf("agi call: %v", err)
	}
	return rep
}

func TestDialLocal(t *testing.T) {
	seed := func(r *agiRig) {
		r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
		r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5071") // a second phone: still one PJSIP/1001
		r.seed("aim-b", "2001", "sip:2001@10.9.0.1:5060")
		r.seed("aim-a", "3001", "sip:3001@127.0.0.1:5072")
		r.seed("aim-b", "3001", "sip:3001@10.9.0.2:5060")
		r.seed("aim-c", "3001", "sip:3001@10.9.0.3:5060")
		r.seed("aim-c", "3001", "sip:3001@10.9.0.4:5060")
	}
	for _, indexed := range []bool{false, true} {
		cfg := testConfig()
		var r *agiRig
		if indexed {
			r = newIndexedRig(t, cfg, seed)
		} else {
			r = newAGIRig(t, cfg)
			seed(r)
		}
		for _, tc := range []struct {
			args         []string
			dial, status string
		}{
			{[]string{"1001", "25", "TtWw", "1001"}, "PJSIP/1001,25,TtWw", StatusLocal},
			{[]string{"2001", "25", "TtWw", "1001"}, "PJSIP/doorman-interserver/sip:2001@10.0.0.2:5060,25,TtWw", StatusRemote},
			{[]string{"3001", "25", "TtWw"}, "PJSIP/3001&PJSIP/doorman-interserver/sip:3001@10.0.0.2:5060&PJSIP/doorman-interserver/sip:3001@[2001:db8::3]:5060,25,TtWw", StatusFound},
			{[]string{"9999", "25", "TtWw"}, "", StatusNotFound},
			{[]string{"1001"}, "PJSIP/1001", StatusLocal},
			{[]string{"1001", "", "tT"}, "PJSIP/1001,,tT", StatusLocal},
			{[]string{"1001", "030"}, "PJSIP/1001,30", StatusLocal},
			{[]string{" 1001 ", "25", "TtWw", ""}, "PJSIP/1001,25,TtWw", StatusLocal},
		} {
			for form, env := range map[string][]byte{"script": scriptEnv(tc.args...), "seed": seedEnv(tc.args...)} {
				rep := call(t, r.addr, env)
				if rep.vars[VarDialString] != tc.dial || rep.vars[VarDialStatus] != tc.status {
					t.Errorf("index=%v %s form %q: dialString=%q dialStatus=%q, want %q %q (commands %q)",
						indexed, form, tc.args, rep.vars[VarDialString], rep.vars[VarDialStatus], tc.dial, tc.status, rep.commands)
				}
				if tc.status == StatusNotFound && (len(rep.verbose) != 1 || !strings.Contains(rep.verbose[0], "9999 is not registered")) {
					t.Errorf("NOTFOUND verbose = %q", rep.verbose)
				}
			}
		}
		r.stop()
	}
}

func TestDialLocalRejectsInjection(t *testing.T) {
	r := newAGIRig(t, testConfig())
	r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
	for _, args := range [][]string{
		{"1001&PJSIP/evil"}, {"1001,,U(x)"}, {"1001)"}, {"${EVIL}"}, {"10 01"}, {"1001;x"}, {`"1001"`},
		{"1001|x"}, {"sip:1001@evil"}, {"1001/x"}, {""}, {"1001", "25,M(x)"}, {"1001", "abc"}, {"1001", "0"},
		{"1001", "-5"}, {"1001", "99999"}, {"1001", "25", "TtWwU(x)"}, {"1001", "25", "G"}, {"1001", "25", "Tt&"},
		{"1001", "25", "T t"}, {"1001", "25", "TtWw", "a|b"}, {"1001", "25", "TtWw", "a)"},
		{"1001", "25", "TtWw", "acct", "extra"}, {strings.Repeat("1", 200)},
	} {
		rep := call(t, r.addr, scriptEnv(args...))
		if rep.vars[VarDialStatus] != StatusInvalid || rep.vars[VarDialString] != "" {
			t.Errorf("%q: dialString=%q dialStatus=%q, want INVALID and empty", args, rep.vars[VarDialString], rep.vars[VarDialStatus])
		}
		if len(rep.verbose) != 1 || !strings.HasPrefix(rep.verbose[0], "doorman dialLocal: ") {
			t.Errorf("%q: verbose %q", args, rep.verbose)
		}
		for _, c := range rep.commands {
			if strings.Count(c, `"`)%2 != 0 || strings.Contains(c, `\`) {
				t.Errorf("%q: unbalanced command %q", args, c)
			}
		}
	}
}

func TestDialLocalAccounts(t *testing.T) {
	cfg := testConfig()
	cfg.EndpointTemplate = "{account}-{exten}"
	cfg.Accounts = []string{"acme", "globex"}
	r := newAGIRig(t, cfg)
	r.seed("aim-a", "acme-1001", "sip:acme-1001@127.0.0.1:5070")
	r.seed("aim-b", "globex-1001", "sip:globex-1001@10.9.0.1:5060")
	for _, tc := range []struct {
		args         []string
		dial, status string
	}{
		{[]string{"1001", "25", "TtWw", "acme"}, "PJSIP/acme-1001,25,TtWw", StatusLocal},
		{[]string{"1001", "25", "TtWw", "globex"}, "PJSIP/doorman-interserver/sip:globex-1001@10.0.0.2:5060,25,TtWw", StatusRemote},
		{[]string{"1001", "25", "TtWw", "initech"}, "", StatusUnknownAccount},
		{[]string{"1001", "25", "TtWw"}, "", StatusInvalid},
	} {
		rep := call(t, r.addr, scriptEnv(tc.args...))
		if rep.vars[VarDialString] != tc.dial || rep.vars[VarDialStatus] != tc.status {
			t.Errorf("%q: dialString=%q dialStatus=%q, want %q %q", tc.args, rep.vars[VarDialString], rep.vars[VarDialStatus], tc.dial, tc.status)
		}
	}
}

func TestDialLocalIgnoresExpiredDeadAndUnsafe(t *testing.T) {
	cfg := testConfig()
	r := newAGIRig(t, cfg)
	ctx := context.Background()
	r.seed("aim-b", "1001", "sip:1001@10.9.0.1:5060")
	_ = r.store.PutRegistration(ctx, state.Registration{Server: "aim-b", ServerAddr: "10.0.0.2:5060", AOR: "1002",
		Endpoint: "1002", Contact: "sip:1002@x", Expires: time.Now().Add(-time.Second)})
	_ = r.store.PutRegistration(ctx, state.Registration{Server: "aim-d", ServerAddr: "10.0.0.4:5060", AOR: "1003",
		Endpoint: "1003", Contact: "sip:1003@x", Expires: time.Now().Add(time.Hour)}) // aim-d never beat
	_ = r.store.PutRegistration(ctx, state.Registration{Server: "aim-b", ServerAddr: "10.0.0.2:5060,M(x)", AOR: "1004",
		Endpoint: "1004", Contact: "sip:1004@x", Expires: time.Now().Add(time.Hour)}) // poisoned store
	_ = r.store.PutRegistration(ctx, state.Registration{Server: "aim-b", ServerAddr: "10.0.0.2:5060", AOR: "1005",
		Endpoint: "1005&Local/x", Contact: "sip:1005@x", Expires: time.Now().Add(time.Hour)})
	for ext, want := range map[string]string{"1001": StatusRemote, "1002": StatusNotFound, "1003": StatusNotFound,
		"1004": StatusNotFound, "1005": StatusNotFound} {
		rep := call(t, r.addr, scriptEnv(ext, "25", "TtWw"))
		if rep.vars[VarDialStatus] != want {
			t.Errorf("%s: dialStatus=%q dialString=%q, want %s", ext, rep.vars[VarDialStatus], rep.vars[VarDialString], want)
		}
	}
}

// TestDialLocalStoreDown: a failing store gives ERROR; with the index, a
// store that goes away ends the feed and lookups go to the store again.
func TestDialLocalStoreDown(t *testing.T) {
	for _, indexed := range []bool{false, true} {
		cfg := testConfig()
		var r *agiRig
		if indexed {
			r = newIndexedRig(t, cfg, func(r *agiRig) { r.seed("aim-b", "1001", "sip:1001@10.9.0.1:5060") })
			if rep := call(t, r.addr, scriptEnv("1001", "25", "TtWw")); rep.vars[VarDialStatus] != StatusRemote {
				t.Fatalf("before the store closed: %+v", rep)
			}
			r.st.(*embedded.Store).Close()
			waitFor(t, "index dropped", func() bool { return r.srv.idx.tab.Load() == nil })
		} else {
			r = newAGIRig(t, cfg)
			r.store.setFail(errDown)
		}
		rep := call(t, r.addr, scriptEnv("1001", "25", "TtWw"))
		if rep.vars[VarDialStatus] != StatusError || rep.vars[VarDialString] != "" || len(rep.verbose) != 1 {
			t.Errorf("index=%v: %+v, want ERROR with a reason", indexed, rep)
		}
	}
}

// TestDialLocalOneRoundTrip checks that both SET VARIABLEs come in one
// write followed by the end of the server's side (Asterisk's run_agi sees a
// pipelined command only once the socket has more bytes or has ended), and
// that an unprompted HANGUP between the replies ends the session, counted as
// a hangup.
// startScript connects as Asterisk does and sends the environment of
// dialLocal with args; the connection closes with the test.
func (r *agiRig) startScript(t *testing.T, args ...string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a speed limit
	if _, err := c.Write(scriptEnv(args...)); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDialLocalOneRoundTrip(t *testing.T) {
	r := newAGIRig(t, testConfig())
	r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
	c := r.startScript(t, "1001", "25", "TtWw")
	// Before any reply: both commands, then the end of the server's side.
	got, err := io.ReadAll(c)
	want := `SET VARIABLE "dialString" "PJSIP/1001,25,TtWw"` + "\n" + `SET VARIABLE "dialStatus" "LOCAL"` + "\n"
	if err != nil || string(got) != want {
		t.Fatalf("before any reply: %q, %v; want %q and the end", got, err, want)
	}
	if _, err := io.WriteString(c, "200 result=1\nHANGUP\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "session ended", func() bool { return r.srv.live.Load() == 0 })
	if n := testutil.ToFloat64(r.srv.m.session(statusHangup)); n != 1 {
		t.Errorf("sessions counted as hangup: %v, want 1", n)
	}
	if n := testutil.ToFloat64(r.srv.m.session(StatusLocal)); n != 0 {
		t.Errorf("sessions counted as LOCAL: %v, want 0", n)
	}
}

func TestDialLocalMalformedEnvironment(t *testing.T) {
	r := newAGIRig(t, testConfig())
	good := string(scriptEnv("1001"))
	for name, env := range map[string]string{
		"line without colon": strings.Replace(good, "agi_language: en\n", "garbage\n", 1),
		"not agi_ key":       strings.Replace(good, "agi_language: en\n", "language: en\n", 1),
		"too few variables":  "agi_network: yes\nagi_network_script: dialLocal\nagi_arg_1: 1001\n\n",
		"unknown script":     strings.Replace(good, "agi_network_script: dialLocal", "agi_network_script: rm-rf", 1),
		"seed form, no dialLocal": string(buildEnv(slicesDelete(envLines, "agi_network_script: dialLocal"),
			[]string{"1001", "25"})),
		"CRLF lines": strings.ReplaceAll(good, "\n", "\r\n"),
	} {
		rep := call(t, r.addr, []byte(env))
		want := StatusError
		if name == "CRLF lines" {
			want = StatusNotFound // CRLF is tolerated; 1001 is not seeded
		}
		if rep.vars[VarDialStatus] != want {
			t.Errorf("%s: dialStatus=%q (commands %q), want %s", name, rep.vars[VarDialStatus], rep.commands, want)
		}
		if want == StatusError && len(rep.verbose) != 1 {
			t.Errorf("%s: no reason given: %q", name, rep.commands)
		}
	}
}

func slicesDelete(lines []string, drop string) []string {
	var out []string
	for _, l := range lines {
		if l != drop {
			out = append(out, l)
		}
	}
	return out
}

// TestNoGoroutineLeak hangs up in every way a channel can and checks that
// every session goroutine ends (by its deadline at worst) and that Serve
// leaves nothing behind.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	cfg := testConfig()
	cfg.SessionTimeout = 300 * time.Millisecond
	r := newAGIRig(t, cfg)
	r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
	env := scriptEnv("1001", "25", "TtWw")
	behaviours := map[string]func(c net.Conn){
		"silent":           func(c net.Conn) { waitClosed(c) },
		"half environment": func(c net.Conn) { c.Write(env[:40]); waitClosed(c) },
		"close after env":  func(c net.Conn) { c.Write(env) },
		"HANGUP instead of reply": func(c net.Conn) {
			c.Write(env)
			readLine(c)
			io.WriteString(c, "HANGUP\n")
			waitClosed(c)
		},
		"HANGUP after a reply": func(c net.Conn) {
			c.Write(env)
			readLine(c)
			io.WriteString(c, "200 result=1\nHANGUP\n")
			waitClosed(c)
		},
		"never replies":  func(c net.Conn) { c.Write(env); waitClosed(c) },
		"huge line":      func(c net.Conn) { c.Write([]byte("agi_x: " + strings.Repeat("a", 10000))); waitClosed(c) },
		"endless env":    func(c net.Conn) { writeEndless(c) },
		"normal session": func(c net.Conn) { agiConverse(c, env) },
	}
	var wg sync.WaitGroup
	var finished atomic.Int64
	for i := 0; i < 5; i++ {
		for _, b := range behaviours {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", r.addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				defer finished.Add(1)
				// Longer than waitFor's deadline: the server must end the session.
				c.SetDeadline(time.Now().Add(30 * time.Second))
				b(c)
			}()
		}
	}
	n := int64(5 * len(behaviours))
	waitFor(t, "all sessions ended by the server", func() bool { return finished.Load() == n && r.srv.live.Load() == 0 })
	wg.Wait()
	r.stop()
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func waitClosed(c net.Conn) { io.Copy(io.Discard, c) }

func readLine(c net.Conn) {
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil || b[0] == '\n' {
			return
		}
	}
}

func writeEndless(c net.Conn) {
	go io.Copy(io.Discard, c)
	for i := 0; ; i++ {
		if _, err := io.WriteString(c, "agi_arg_1: 1001\n"); err != nil {
			return
		}
	}
}

func TestMaxSessionsAndShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessions = 2
	cfg.SessionTimeout = time.Minute
	r := newAGIRig(t, cfg)
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Half an environment: the listener hands a connection over once
		// bytes arrive (TCP_DEFER_ACCEPT), and the session waits for the rest.
		if _, err := io.WriteString(c, "agi_network: yes\n"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, "two sessions", func() bool { return r.srv.live.Load() == 2 })
	rep, err := agiCall(r.addr, scriptEnv("1001"))
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = nil // closed unread: the kernel resets
	}
	if err != nil || len(rep.commands) != 0 {
		t.Fatalf("third session got %q, %v; want closed at once", rep.commands, err)
	}
	start := time.Now()
	r.stop() // must close the held sessions, not wait for their deadline
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("held session still open after shutdown")
		}
	}
}
