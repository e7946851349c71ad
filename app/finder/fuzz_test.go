package finder

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/zaf/agi"
)

// FuzzDialLocal feeds arbitrary environments (seeded from agi-session.txt)
// through the session path and checks that nothing crashes and that no
// dialString ever carries characters a caller could use to add dial
// targets or options.
func FuzzDialLocal(f *testing.F) {
	f.Add(scriptEnv("1001", "25", "TtWw", "1001"))
	f.Add(seedEnv("2001", "25", "TtWw", "acme"))
	f.Add(scriptEnv("1001&PJSIP/x", "25,M(x)", "U(y)"))
	f.Add([]byte("agi_network: yes\n\n"))
	f.Add([]byte("garbage\n\n"))
	st := newMemStore()
	r := &agiRig{store: st, st: st}
	r.seed("aim-a", "1001", "sip:1001@127.0.0.1:5070")
	r.seed("aim-b", "2001", "sip:2001@10.9.0.1:5060")
	cfg := testConfig()
	srv, err := NewAGIServer(cfg, AGIDeps{Store: r.store})
	if err != nil {
		f.Fatal(err)
	}
	statuses := []string{StatusLocal, StatusRemote, StatusFound, StatusNotFound, StatusUnknownAccount, StatusInvalid, StatusError}
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, err := readEnv(bufio.NewReaderSize(bytes.NewReader(in), maxLineLen))
		if err != nil {
			return
		}
		s := agi.New()
		if s.Init(bufio.NewReadWriter(bufio.NewReader(bytes.NewReader(raw)), bufio.NewWriter(io.Discard))) != nil {
			return
		}
		dial, status, reason := srv.resolve(context.Background(), s.Env)
		if !strings.Contains(strings.Join(statuses, " "), status) || status == "" {
			t.Fatalf("unknown status %q", status)
		}
		if strings.ContainsAny(reason, "\"\\\n\r") && verboseSafe(reason) == reason {
			t.Fatalf("verboseSafe left %q", reason)
		}
		if dial == "" {
			return
		}
		if !strings.HasPrefix(dial, "PJSIP/") {
			t.Fatalf("dialString %q", dial)
		}
		targets, opts, _ := strings.Cut(dial, ",")
		if strings.Count(dial, ",") > 2 || strings.ContainsAny(opts, "()&|;$\"' ") {
			t.Fatalf("dialString %q carries injected options", dial)
		}
		for _, tg := range strings.Split(targets, "&") {
			if tg != "PJSIP/1001" && tg != "PJSIP/doorman-interserver/sip:2001@10.0.0.2:5060" {
				t.Fatalf("dialString %q has unexpected target %q", dial, tg)
			}
		}
	})
}

// FuzzContactList checks that any ContactList item parses without a crash
// and yields a registration only with an AOR and a contact.
func FuzzContactList(f *testing.F) {
	f.Add(contactList1001)
	f.Add(contactList1002)
	f.Add("Event: ContactList\nObjectName: ;@\nExpirationTime: -1")
	tr, err := NewTracker(testConfig(), TrackerDeps{AMI: newFakeAMI(), Store: newMemStore()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, block string) {
		m := parseBlock(block)
		r, res := tr.parseContactList(&m, registeredAt)
		if res == contactKept && (r.AOR == "" || r.Contact == "" || r.Server != "aim-a" || !r.Expires.After(registeredAt)) {
			t.Fatalf("kept %+v", r)
		}
		if c, ok := parseContactStatus(&m); ok && (c.key.aor == "" || c.key.uri == "") {
			t.Fatalf("contact status %+v", c)
		}
	})
}
