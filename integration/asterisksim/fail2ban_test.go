package asterisksim

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var reF2BMatched = regexp.MustCompile(`Lines: \d+ lines, \d+ ignored, (\d+) matched`)

func fail2banMatches(t *testing.T, logPath string) string {
	t.Helper()
	out, err := exec.Command("fail2ban-regex", logPath, "/etc/fail2ban/filter.d/asterisk.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	m := reF2BMatched.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no match count in fail2ban-regex output:\n%s", out)
	}
	return m[1]
}

// TestSecurityLogReadByFail2ban runs Debian's fail2ban-regex with the stock
// asterisk filter over the simulator's security log and over the same part
// of the captured one: both must match the same number of lines.
func TestSecurityLogReadByFail2ban(t *testing.T) {
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		t.Skip("fail2ban-regex not installed")
	}
	if _, err := os.Stat("/etc/fail2ban/filter.d/asterisk.conf"); err != nil {
		t.Skip("no stock asterisk filter")
	}
	cfg := testConfig(t)
	s, clk := startSimClock(t, cfg)
	phaseOne(t, s, clk)
	var want []string
	for _, l := range strings.Split(readTranscript(t, "security-log.txt"), "\n") {
		if strings.Contains(l, "SecurityEvent=") && l < "[2026-11-25 11:26:44" {
			want = append(want, l)
		}
	}
	wantPath := filepath.Join(t.TempDir(), "capture-security")
	if err := os.WriteFile(wantPath, []byte(strings.Join(want, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, g := fail2banMatches(t, wantPath), fail2banMatches(t, cfg.SecurityLogPath)
	if w != g || g == "0" {
		t.Errorf("fail2ban matched %s lines of the simulator's log, %s of the capture's", g, w)
	}
}

// TestMessagesLogMatchesCapture compares the NOTICE lines of PHASE1 with
// messages-log-excerpt.txt, and has fail2ban read both.
func TestMessagesLogMatchesCapture(t *testing.T) {
	cfg := testConfig(t)
	s, clk := startSimClock(t, cfg)
	phaseOne(t, s, clk)
	var want []string
	for _, l := range strings.Split(readTranscript(t, "messages-log-excerpt.txt"), "\n") {
		if strings.Contains(l, "] NOTICE[") && l >= "[2026-11-25 11:26:33" && l < "[2026-11-25 11:26:44" {
			want = append(want, l)
		}
	}
	gotB, err := os.ReadFile(cfg.MessagesLogPath)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSuffix(string(gotB), "\n")
	if d := diff(newNormaliser().norm(strings.Join(want, "\n")), newNormaliser().norm(got)); d != "" {
		t.Errorf("messages log differs at %s", d)
	}
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		return
	}
	wantPath := filepath.Join(t.TempDir(), "capture-messages")
	if err := os.WriteFile(wantPath, []byte(strings.Join(want, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if w, g := fail2banMatches(t, wantPath), fail2banMatches(t, cfg.MessagesLogPath); w != g || g == "0" {
		t.Errorf("fail2ban matched %s NOTICE lines of the simulator, %s of the capture", g, w)
	}
}
