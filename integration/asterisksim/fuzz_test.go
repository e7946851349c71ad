package asterisksim

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fuzzCore() *core {
	cfg := Config{SystemName: "aim-a", EntityID: "02:00:00:00:00:0a",
		Endpoints: map[string]string{"1001": "pw1001"}, AMIUsers: map[string]string{"aim": "aimsecret"}, AuthFailDelay: -1}
	cfg.applyDefaults()
	return newCore(cfg, slog.New(slog.DiscardHandler))
}

// sipSeeds returns every request of the SIP captures.
func sipSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"sip-register-raw.txt", "supplement-2/5-register-tcp/sip-tcp-raw.txt", "qualify-supplement/sip-raw.txt"} {
		b, err := os.ReadFile(filepath.Join(transcripts, name))
		if err != nil {
			continue
		}
		for _, chunk := range strings.Split(string(b), "\n----- ")[1:] {
			hdr, body, _ := strings.Cut(chunk, "-----\n")
			if strings.Contains(hdr, " -> ") {
				out = append(out, []byte(body))
			}
		}
	}
	out = append(out, []byte("REGISTER sip:x SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5;branch=z9hG4bK1;rport\r\nf: <sip:1001@x>;tag=1\r\nt: sip:1001@x\r\ni: a\r\nCSeq: 1 REGISTER\r\nm: *\r\nExpires: 0\r\nl: 0\r\n\r\n"))
	return out
}

// FuzzSIPHandle feeds datagrams through the whole registrar path.
func FuzzSIPHandle(f *testing.F) {
	for _, s := range sipSeeds(f) {
		f.Add(s)
	}
	c := fuzzCore()
	srv := &sipServer{c: c, secret: "k"}
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		srv.handle(pkt, src, "UDP", "IPV4/UDP/127.0.0.1/5060", func(b []byte) {
			if !bytes.HasPrefix(b, []byte("SIP/2.0 ")) || !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
				t.Fatalf("malformed response %q", b)
			}
		})
	})
}

// FuzzSIPStream frames TCP streams.
func FuzzSIPStream(f *testing.F) {
	for _, s := range sipSeeds(f) {
		f.Add(append(append([]byte("\r\n\r\n"), s...), s...))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(stream), 8192)
		for i := 0; i < 100; i++ {
			msg, ping, err := readSIPStream(r)
			if err != nil {
				return
			}
			if !ping {
				_, _ = parseSIP(msg)
			}
		}
	})
}

// FuzzAMISession drives a whole manager session with arbitrary input.
func FuzzAMISession(f *testing.F) {
	for _, name := range []string{"supplement-2/1-ami-actions/ami-actions.c2s.raw", "supplement-2/2-ami-md5-login/ami-challenge-errors.c2s.raw",
		"supplement-2/2-ami-md5-login/ami-md5-wrong-key.c2s.raw", "supplement-2/4-hint-stasis/ami-extensionstate.c2s.raw"} {
		if b, err := os.ReadFile(filepath.Join(transcripts, name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Action: Login\nUsername: aim\nSecret: aimsecret\n\nAction: UserEvent\nUserEvent: x\n\n\n\n"))
	c := fuzzCore()
	f.Fuzz(func(t *testing.T, in []byte) {
		server, client := net.Pipe()
		sess := newAMISession(c, server)
		done := make(chan struct{})
		go func() { defer close(done); sess.run(context.Background()) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(in)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end after the client closed")
		}
	})
}
