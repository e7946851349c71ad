// Package agi is the Asterisk side of FastAGI for the simulated Asterisk 22:
// like the dialplan application AGI(agi://host[:port][/script],args...), it
// connects to an AGI server, sends the agi_* environment byte for byte as
// Asterisk does (shared/asterisk-transcripts/agi-session.txt), answers the
// server's commands against a simulated channel, and reports the channel
// variables and the AGISTATUS Asterisk would leave behind. It reads commands
// as res_agi's run_agi does (poll on the socket, then fgets from a stdio
// buffer), so a server that pipelines commands without ending its side of
// the connection stalls here as it would on Asterisk.
package agi

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// DefaultPort is the FastAGI port Asterisk uses when the URL has none.
const DefaultPort = "4573"

// connectTimeout is res_agi's MAX_AGI_CONNECT.
const connectTimeout = 2 * time.Second

// Channel is the calling channel as the AGI environment describes it. Empty
// fields take the values of the captured call (see withDefaults).
type Channel struct {
	Name        string // agi_channel, e.g. "Local/7000@default-00000000;2"
	Language    string // "en"
	Type        string // channel technology; derived from Name when empty
	UniqueID    string // e.g. "aim-a-1795606024.1"
	Version     string // "GIT-22-69535d4837"
	CallerID    string // number, "unknown" when none
	CallerName  string // "unknown" when none
	CallingPres string // "67"
	CallingANI2 string // "0"
	CallingTON  string // "0"
	CallingTNS  string // "0"
	DNID        string // "unknown"
	RDNIS       string // "unknown"
	Context     string // "default"
	Extension   string // e.g. "7000"
	Priority    string // "1"
	Enhanced    string // "0.0"
	AccountCode string // "" in the capture
	ThreadID    string // agi_threadid; derived from UniqueID when empty
	State       int    // for CHANNEL STATUS; 0 means 4 (Ring), as captured
	// Vars are the channel variables set before AGI() ran.
	Vars map[string]string
}

// Var is one SET VARIABLE (or Set()) the AGI server made.
type Var struct{ Name, Value string }

// Result is what the dialplan sees after AGI() returns.
type Result struct {
	// Status is AGISTATUS: SUCCESS, FAILURE or HANGUP (NOTFOUND for a
	// local script path, which the simulator cannot run).
	Status string
	// Vars holds every channel variable afterwards (AGISTATUS included).
	Vars map[string]string
	// Set lists the variables the server set, in order.
	Set []Var
	// Commands are the command lines received, in order.
	Commands []string
	// HungUp tells whether the channel was hung up during the session.
	HungUp bool
}

// Option changes how the simulated channel behaves.
type Option func(*config)

type config struct {
	hangupAfter   time.Duration // 0: never
	hangupDuring  int           // 1-based command index; 0: never
	dialStatus    func(dialString string) string
	log           *slog.Logger
	answerLatency time.Duration
	onCommand     func(line, reply string)
}

// WithCallerHangup makes the caller hang up d after the connection opened:
// a running EXEC Wait/Dial then returns -1, and an unprompted "HANGUP" line
// goes to the server at once.
func WithCallerHangup(d time.Duration) Option { return func(c *config) { c.hangupAfter = d } }

// WithHangupDuring makes the caller hang up while the n-th command (1-based)
// runs, as in connection 2 of the capture (EXEC Wait 10 answered -1, then
// "HANGUP"). It is the deterministic form of WithCallerHangup.
func WithHangupDuring(n int) Option { return func(c *config) { c.hangupDuring = n } }

// WithDialStatus decides DIALSTATUS for EXEC Dial; the default is
// CHANUNAVAIL (nothing registered), as captured.
func WithDialStatus(f func(dialString string) string) Option {
	return func(c *config) { c.dialStatus = f }
}

// WithAnswerLatency delays ANSWER (a Local channel took 500 ms in the capture).
func WithAnswerLatency(d time.Duration) Option { return func(c *config) { c.answerLatency = d } }

// WithCommandHook calls f after each command with the command line and the
// reply sent, as res_agi raises AGIExecStart/AGIExecEnd on AMI around it.
func WithCommandHook(f func(line, reply string)) Option { return func(c *config) { c.onCommand = f } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Dial runs one AGI() application call: it connects to rawURL
// ("agi://host[:port][/script]"), sends the environment for ch and args, and
// serves commands until the server closes the connection (or sends
// FAILURE, or ctx ends). A connection failure gives Status FAILURE and an
// error; ctx ending gives the partial Result and ctx's error.
func Dial(ctx context.Context, rawURL string, ch Channel, args []string, opts ...Option) (*Result, error) {
	cfg := config{dialStatus: func(string) string { return "CHANUNAVAIL" }}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	target, err := ParseURL(rawURL)
	if err != nil {
		if !strings.Contains(rawURL, "://") {
			// A local script: Asterisk stats the file and, the simulator
			// having none, sets AGISTATUS=NOTFOUND.
			return failedWith(ch, "NOTFOUND"), err
		}
		return failed(ch), err
	}
	return run(ctx, target, ch.withDefaults(), args, cfg)
}

// DialApp runs AGI() with its dialplan argument string, e.g.
// "agi://10.0.0.1:4573/dialLocal,${EXTEN},25,TtWw" or the seed's form
// "agi://10.0.0.1:4573,dialLocal,1001" (see SplitAppArgs).
func DialApp(ctx context.Context, appData string, ch Channel, opts ...Option) (*Result, error) {
	rawURL, args := SplitAppArgs(appData)
	return Dial(ctx, rawURL, ch, args, opts...)
}

func failed(ch Channel) *Result { return failedWith(ch, "FAILURE") }

func failedWith(ch Channel, status string) *Result {
	vars := map[string]string{}
	for k, v := range ch.Vars {
		vars[k] = v
	}
	vars["AGISTATUS"] = status
	return &Result{Status: status, Vars: vars}
}
