package harness

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/sipua"
)

// TestBedIsReal proves the bed separates hosts for real: REGISTERs from the
// attacker's namespace reach the simulated Asterisk in the server's
// namespace and are answered, until an nftables drop rule for the
// attacker's address is added on the server; then they get no answer.
func TestBedIsReal(t *testing.T) {
	bed := New(t)
	server := bed.AddHost("server")
	attacker := bed.AddHost("attacker")
	bin := Binaries(t)
	server.Start(t, "asterisk-sim", filepath.Join(bin, "asterisk-sim"), "-system-name", "bed",
		"-ami", "127.0.0.1:5038", "-sip", server.IPv4.String()+":5060", "-http", "", "-control", "127.0.0.1:8089", "-endpoint", "1001:pw1001")

	var phone *sipua.Phone
	if err := attacker.Do(func() (err error) {
		phone, err = sipua.New(context.Background(), sipua.Config{Server: server.IPv4.String() + ":5060",
			LocalAddr: attacker.IPv4.String() + ":0", User: "1001", Password: "pw1001", Timeout: time.Second})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer phone.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := Eventually(ctx, func() error {
		phone.NewDialog()
		resp, err := phone.Register(ctx)
		if err != nil {
			return err
		}
		if resp.Status != 200 {
			return errors.New("REGISTER answered " + resp.Reason)
		}
		return nil
	}); err != nil {
		t.Fatalf("before the drop rule, the phone could not register: %v", err)
	}
	if !fromAttacker(t, server, attacker) {
		t.Fatal("the simulator did not see the attacker's address as the source")
	}

	server.MustRun("nft", "add table inet bedtest")
	server.MustRun("nft", "add chain inet bedtest pre { type filter hook prerouting priority raw; }")
	server.MustRun("nft", "add rule inet bedtest pre ip saddr "+attacker.IPv4.String()+" drop")
	for i := 0; i < 3; i++ {
		phone.NewDialog()
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := phone.Register(rctx)
		rcancel()
		if !errors.Is(err, sipua.ErrTimeout) {
			t.Fatalf("after the drop rule the REGISTER still got %v, %v", resp, err)
		}
	}
}

// fromAttacker checks, through the simulator's control API, that the
// registered contact's source is the attacker's address.
func fromAttacker(t *testing.T, server, attacker *Host) bool {
	t.Helper()
	resp, err := server.HTTPClient(3 * time.Second).Get("http://127.0.0.1:8089/control/contacts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var contacts []struct{ Source string }
	if err := json.NewDecoder(resp.Body).Decode(&contacts); err != nil {
		t.Fatal(err)
	}
	for _, c := range contacts {
		if strings.Contains(c.Source, "/"+attacker.IPv4.String()+"/") {
			return true
		}
	}
	t.Logf("contacts: %+v", contacts)
	return false
}
