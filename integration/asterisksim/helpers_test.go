package asterisksim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const transcripts = "/work/shared/asterisk-transcripts"

func readTranscript(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(transcripts, rel))
	if err != nil {
		t.Skipf("transcript not available: %v", err)
	}
	return string(b)
}

// testConfig is the captured instance "aim-a" on ephemeral loopback ports.
func testConfig(t testing.TB) Config {
	return Config{
		SystemName: "aim-a", EntityID: "02:00:00:00:00:0a",
		AMIAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0",
		Endpoints:       map[string]string{"1001": "pw1001", "1002": "pw1002"},
		AMIUsers:        map[string]string{"aim": "aimsecret"},
		ARIUsers:        map[string]string{"aim": "aimsecret"},
		SecurityLogPath: filepath.Join(t.TempDir(), "security"),
		MessagesLogPath: filepath.Join(t.TempDir(), "messages"),
		StateDir:        t.TempDir(),
		AuthFailDelay:   20 * time.Millisecond,
	}
}

func startSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawAMI records everything the server sends on one AMI connection.
type rawAMI struct {
	conn net.Conn
	mu   sync.Mutex
	buf  strings.Builder
	done chan struct{}
}

func dialAMI(t testing.TB, addr string) *rawAMI {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &rawAMI{conn: c, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		r := bufio.NewReader(c)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			a.mu.Lock()
			a.buf.Write(b[:n])
			a.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close() })
	return a
}

func (a *rawAMI) send(t testing.TB, s string) {
	t.Helper()
	if _, err := a.conn.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (a *rawAMI) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.String()
}

func (a *rawAMI) waitContains(t testing.TB, sub string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d× %q on AMI", n, sub), func() bool { return strings.Count(a.text(), sub) >= n })
}

func (a *rawAMI) closed() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// normaliser replaces values that legitimately differ between runs
// (timestamps, pointers, Call-IDs, nonces, hashes, ports) by stable
// placeholders numbered in order of first appearance, so identity
// relations (same Call-ID twice) still have to match.
type normaliser struct {
	maps map[string]map[string]string
}

func newNormaliser() *normaliser { return &normaliser{maps: map[string]map[string]string{}} }

func (n *normaliser) token(kind, v string) string {
	m := n.maps[kind]
	if m == nil {
		m = map[string]string{}
		n.maps[kind] = m
	}
	if r, ok := m[v]; ok {
		return r
	}
	r := fmt.Sprintf("<%s%d>", kind, len(m)+1)
	m[v] = r
	return r
}

var (
	reTV      = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}`)
	reLogTime = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] (SECURITY|NOTICE)\[\d+\]`)
	rePtr     = regexp.MustCompile(`0x[0-9a-f]{6,16}`)
	reCallID  = regexp.MustCompile(`[0-9a-f]{16}@127\.0\.0\.1`)
	reNonce   = regexp.MustCompile(`\d{10}/[0-9a-f]{32}`)
	reHash    = regexp.MustCompile(`\b[0-9a-f]{32}\b`)
	reOpaque  = regexp.MustCompile(`opaque="[0-9a-f]{16}"`)
	reBranch  = regexp.MustCompile(`z9hG4bK[0-9a-f]+`)
	reTag     = regexp.MustCompile(`tag=[0-9a-f]{8}\b`)
	reCnonce  = regexp.MustCompile(`cnonce="[0-9a-f]{8}"`)
	rePortA   = regexp.MustCompile(`(IPV[46]/(?:UDP|TCP)/127\.0\.0\.1/)(\d+)`)
	rePortB   = regexp.MustCompile(`(127\.0\.0\.1:)(\d+)`)
	rePortC   = regexp.MustCompile(`(rport=|ViaPort: )(\d+)`)
	reUptime  = regexp.MustCompile(`(Uptime|LastReload): \d+`)
	reDate    = regexp.MustCompile(`Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT`)
	rePing    = regexp.MustCompile(`Timestamp: \d+\.\d{6}`)
	reExpTime = regexp.MustCompile(`ExpirationTime: \d+`)
	reChal    = regexp.MustCompile(`Challenge: \d+`)
	reCore    = regexp.MustCompile(`(Core(?:Startup|Reload)(?:Date|Time)): [\d:-]+`)
)

func (n *normaliser) norm(s string) string {
	s = reTV.ReplaceAllStringFunc(s, func(v string) string {
		if strings.HasPrefix(v, "1970-") {
			return v
		}
		return "<TV>"
	})
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = reLogTime.ReplaceAllString(l, "[<LOGTIME>] $1[<TID>]")
	}
	s = strings.Join(lines, "\n")
	s = reDate.ReplaceAllString(s, "Date: <DATE>")
	s = rePing.ReplaceAllString(s, "Timestamp: <PING>")
	s = reExpTime.ReplaceAllString(s, "ExpirationTime: <EXP>")
	s = reUptime.ReplaceAllString(s, "$1: <N>")
	s = reCore.ReplaceAllString(s, "$1: <T>")
	s = reChal.ReplaceAllStringFunc(s, func(v string) string { return "Challenge: " + n.token("AMICHAL", v) })
	s = rePtr.ReplaceAllStringFunc(s, func(v string) string { return n.token("PTR", v) })
	s = reCallID.ReplaceAllStringFunc(s, func(v string) string { return n.token("CALL", v) })
	s = reNonce.ReplaceAllStringFunc(s, func(v string) string { return n.token("NONCE", v) })
	s = reOpaque.ReplaceAllStringFunc(s, func(v string) string { return n.token("OPAQUE", v) })
	s = reBranch.ReplaceAllStringFunc(s, func(v string) string { return n.token("BRANCH", v) })
	s = reTag.ReplaceAllStringFunc(s, func(v string) string { return n.token("TAG", v) })
	s = reCnonce.ReplaceAllStringFunc(s, func(v string) string { return n.token("CNONCE", v) })
	s = reHash.ReplaceAllStringFunc(s, func(v string) string { return n.token("HASH", v) })
	port := func(re *regexp.Regexp) {
		s = re.ReplaceAllStringFunc(s, func(v string) string {
			m := re.FindStringSubmatch(v)
			return m[1] + n.token("PORT", m[2])
		})
	}
	port(rePortA)
	port(rePortB)
	port(rePortC)
	return s
}

// diff reports the first differing line of two normalised texts.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			lo := max(0, i-3)
			return fmt.Sprintf("line %d:\n want %q\n  got %q\ncontext want: %q\ncontext got:  %q", i+1, w, g,
				wl[lo:min(len(wl), i+2)], gl[lo:min(len(gl), i+2)])
		}
	}
	return ""
}

// fakeClock lets a replay space its steps like the capture without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startSimClock starts a simulator whose clock only moves when told.
func startSimClock(t *testing.T, cfg Config) (*Sim, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Now()}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.core.now = clk.now
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clk
}

var rePlaceholderNum = regexp.MustCompile(`<([A-Z]+)\d+>`)

// messages splits an AMI stream into normalised messages with anonymous
// placeholders, for comparisons where the order between event sources is
// not stable on a real Asterisk either.
func messages(stream string) []string {
	n := newNormaliser().norm(stream)
	n = rePlaceholderNum.ReplaceAllString(n, "<$1>")
	var out []string
	for _, m := range strings.SplitAfter(n, "\r\n\r\n") {
		if strings.TrimSpace(m) != "" {
			out = append(out, m)
		}
	}
	return out
}

// sameMessages compares two AMI streams as multisets of messages.
func sameMessages(t *testing.T, what, want, got string) {
	t.Helper()
	w, g := messages(want), messages(got)
	count := map[string]int{}
	for _, m := range w {
		count[m]++
	}
	for _, m := range g {
		count[m]--
	}
	sec := func(ms []string) []string {
		var out []string
		for _, m := range ms {
			if strings.Contains(m, "Privilege: security,all") {
				out = append(out, m)
			}
		}
		return out
	}
	if d := diff(strings.Join(sec(w), "\n"), strings.Join(sec(g), "\n")); d != "" {
		t.Errorf("%s: security events differ in order at %s", what, d)
	}
	for m, c := range count {
		if c > 0 {
			t.Errorf("%s: missing %d× %q", what, c, m)
		} else if c < 0 {
			t.Errorf("%s: unexpected %d× %q", what, -c, m)
		}
	}
}
