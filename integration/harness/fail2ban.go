package harness

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	return f
}

// Banned reports whether fail2ban's nftables set holds addr.
func (f *Fail2ban) Banned(addr netip.Addr) bool {
	set := "addr-set-asterisk"
	out, err := f.Host.Run("nft", "list", "set", "inet", "f2b-table", set)
	if err != nil {
		return false
	}
	return strings.Contains(out, addr.String())
}

// Stop ends fail2ban.
func (f *Fail2ban) Stop() { f.proc.Stop() }
