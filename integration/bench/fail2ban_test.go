package bench

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/harness"
)

// TestFail2banReference proves the reference side of the comparison works:
// fail2ban (stock asterisk filter, nftables-allports) reads the simulator's
// security log and, at the 5th failed REGISTER from an address, stops the
// server answering it.
func TestFail2banReference(t *testing.T) {
	harness.RequireRoot(t)
	bed := harness.New(t)
	srv, attacker := bed.AddHost("f2b"), bed.AddHost("attacker")
	dir := t.TempDir()
	srv.Start(t, "sim", harness.Binaries(t)+"/asterisk-sim", "-ami", "127.0.0.1:5038", "-sip", "0.0.0.0:5060",
		"-http", "", "-endpoint", "1001:pw1001", "-security-log", dir+"/security")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitTCP(ctx, "127.0.0.1:5038"); err != nil {
		t.Fatal(err)
	}
	f := srv.StartFail2ban(t, dir+"/security", 5, 600, 600)
	r := &rig{tb: t}
	r.attacker = attacker
	p := r.phones([]netip.Addr{attacker.IPv4}, srv, 500*time.Millisecond)[0]
	for i := 1; i <= 5; i++ {
		if ok, _, err := fail(p, true); !ok || err != nil {
			t.Fatalf("attempt %d before the ban: answered %v, %v", i, ok, err)
		}
	}
	if err := harness.Eventually(ctx, func() error {
		if !f.Banned(attacker.IPv4) {
			return context.DeadlineExceeded
		}
		return nil
	}); err != nil {
		t.Fatalf("fail2ban did not ban %s: %v", attacker.IPv4, err)
	}
	if ok, _, err := fail(p, true); ok || err != nil {
		t.Fatalf("after the ban: answered %v, %v; want no answer", ok, err)
	}
}
