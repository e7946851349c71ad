package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fail2ban is Debian's fail2ban running inside a host with its stock
// asterisk filter on a simulated server's security log and the stock
// nftables action: the reference the Intrusion Monitor is measured against.
type Fail2ban struct {
	Host *Host
	proc *Proc
}

// StartFail2ban starts fail2ban-server in h, watching logPath, banning after
// maxretry failures within findtime seconds for bantime seconds.
func (h *Host) StartFail2ban(t testing.TB, logPath string, maxretry, findtime, bantime int) *Fail2ban {
	t.Helper()
	server, err := exec.LookPath("fail2ban-server")
	if err != nil {
		t.Skip("needs fail2ban (Debian package): run .ci/setup.sh")
	}
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "/etc/fail2ban/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("harness: copy fail2ban config: %v: %s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(dir, "jail.d"))
	_ = os.MkdirAll(filepath.Join(dir, "jail.d"), 0o755)
	run := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fail2ban.local", fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = STDOUT\nsocket = %s/f2b.sock\npidfile = %s/f2b.pid\ndbfile = :memory:\n", run, run))
	write("jail.local", fmt.Sprintf(`[DEFAULT]
backend = pyinotify
banaction = nftables-allports
banaction_allports = nftables-allports
ignoreip =
[asterisk]
enabled = true
filter = asterisk
logpath = %s
maxretry = %d
findtime = %d
bantime = %d
`, logPath, maxretry, findtime, bantime))
	f := &Fail2ban{Host: h}
	f.proc = h.Start(t, "fail2ban", server, "-f", "-x", "-c", dir, "-s", run+"/f2b.sock", "-p", run+"/f2b.pid")
	// Attacks made before the jail watches the log would be judged late.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Eventually(ctx, func() error {
		if ok, err := f.proc.Exited(); ok {
			t.Fatalf("harness: fail2ban exited: %v: %s", err, tail([]byte(f.proc.Output()), 2000))
		}
		if !strings.Contains(f.proc.Output(), "Jail 'asterisk' started") {
			return errors.New("jail not started")
		}
		return nil
	}); err != nil {
		t.Fatalf("harness: fail2ban: %v", err)
	}
	return f
}

// Sets names the nftables sets fail2ban bans into (table inet f2b-table):
// the stock asterisk jail runs the action once per protocol, so SIP over
// UDP is dropped through the "-udp" set, TCP through the "-tcp" one.
var Fail2banSets = []string{"addr-set-asterisk-udp", "addr-set-asterisk-tcp"}

// Banned reports whether fail2ban's nftables set for the asterisk jail
// over UDP (which SIP uses here) holds addr.
func (f *Fail2ban) Banned(addr netip.Addr) bool {
	out, err := f.Host.Run("nft", "list", "set", "inet", "f2b-table", Fail2banSets[0])
	if err != nil {
		return false
	}
	_, els, ok := strings.Cut(out, "elements = {")
	if !ok {
		return false
	}
	els, _, _ = strings.Cut(els, "}")
	for _, e := range strings.Split(els, ",") {
		if strings.TrimSpace(e) == addr.String() {
			return true
		}
	}
	return false
}

// Stop ends fail2ban.
func (f *Fail2ban) Stop() { f.proc.Stop() }
