package intrusion

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testConfig is DefaultConfig with intervals short enough for tests.
func testConfig() Config {
	c := DefaultConfig()
	c.ReconcileInterval = 20 * time.Millisecond
	c.StoreTimeout = time.Second
	return c
}

type harness struct {
	t      testing.TB
	m      *Monitor
	clock  *fakeClock
	store  *fakeStore
	fw     *fakeFirewall
	logs   *lockedWriter
	cancel context.CancelFunc
	done   chan error
}

// newHarness builds a monitor on fakes; start runs it.
func newHarness(t testing.TB, cfg Config, clock *fakeClock, store state.Bans, fs *fakeStore, fw firewall.Firewall, server string) *harness {
	t.Helper()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	m, err := New(cfg, Deps{Store: store, Firewall: fw, Server: server, Clock: clock,
		Log:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &harness{t: t, m: m, clock: clock, store: fs, logs: logs}
	if f, ok := fw.(*fakeFirewall); ok {
		h.fw = f
	}
	return h
}

// startMonitor runs a monitor on a fresh fake store and firewall.
func startMonitor(t testing.TB, cfg Config) *harness {
	t.Helper()
	clock := newFakeClock()
	store := newFakeStore(clock)
	h := newHarness(t, cfg, clock, store, store, newFakeFirewall(clock), "pbx-a")
	h.start()
	return h
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.m.Run(ctx) }()
	h.t.Cleanup(h.stop)
	waitFor(h.t, "monitor running", h.m.running.Load)
	if fs := h.store; fs != nil {
		fs.mu.Lock()
		down := fs.down
		fs.mu.Unlock()
		if !down {
			waitFor(h.t, "monitor ready", h.m.Ready)
		}
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Errorf("Run did not return")
	}
	h.cancel = nil
}

// waitBanned waits until p is in the fake firewall with the given kind.
func (h *harness) waitBanned(p netip.Prefix, permanent bool) {
	h.t.Helper()
	waitFor(h.t, "ban of "+p.String(), func() bool {
		in, perm := h.fw.has(p)
		return in && perm == permanent
	})
}

// settle waits until the monitor's queues are empty.
func (h *harness) settle() {
	h.t.Helper()
	waitFor(h.t, "queues drained", func() bool {
		h.m.fwq.mu.Lock()
		n := len(h.m.fwq.ops)
		h.m.fwq.mu.Unlock()
		for _, s := range h.m.counters.shards {
			s.mu.Lock()
			n += len(s.ops)
			if s.busy { // taken from ops, not yet in the store
				n++
			}
			s.mu.Unlock()
		}
		// flush takes pending and leaves spare nil until it is done.
		h.m.writer.mu.Lock()
		flushing := h.m.writer.spare == nil
		h.m.writer.mu.Unlock()
		return n == 0 && !flushing && h.m.writer.pendingLen() == 0
	})
	// One more round trip through the firewall queue flushes what a worker
	// queued while we looked.
	_ = h.m.fwq.do(context.Background(), func(context.Context, firewall.Firewall) error { return nil })
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (h *harness) logText() string {
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	return h.logs.w.String()
}

// failed returns a failed PJSIP attempt event from src.
func failed(src, session string) ami.SecurityEvent {
	return ami.SecurityEvent{Type: "InvalidAccountID", Service: "PJSIP", AccountID: "9999", SessionID: session,
		Transport: "UDP", Remote: netip.MustParseAddrPort(src), Local: netip.MustParseAddrPort("192.0.2.1:5060"),
		Severity: "Error"}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// value reads a counter, gauge or histogram (its sample count).
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Gauge != nil:
			sum += d.Gauge.GetValue()
		case d.Histogram != nil:
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}

// transcriptEvents reads the security events of a real Asterisk 22 AMI
// capture, with 127.0.0.1 replaced by src (loopback is never banned).
// It is a test-only reader: the ami package owns the real parser.
func transcriptEvents(t testing.TB, path string, src netip.Addr) []ami.SecurityEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []ami.SecurityEvent
	for _, block := range strings.Split(string(b), "\r\n\r\n") {
		f := map[string]string{}
		for _, line := range strings.Split(block, "\r\n") {
			if k, v, ok := strings.Cut(line, ": "); ok {
				f[k] = v
			}
		}
		if !strings.Contains(f["Privilege"], "security") {
			continue
		}
		ev := ami.SecurityEvent{Type: f["Event"], Service: f["Service"], AccountID: f["AccountID"],
			SessionID: f["SessionID"], Severity: f["Severity"]}
		ev.Transport, ev.Remote = parseAMIAddr(f["RemoteAddress"], src)
		_, ev.Local = parseAMIAddr(f["LocalAddress"], src)
		ev.Time, _ = time.Parse("2006-01-02T15:04:05.000-0700", f["EventTV"])
		out = append(out, ev)
	}
	return out
}

// parseAMIAddr reads "IPV4/UDP/127.0.0.1/5070" (IPv6 without brackets).
func parseAMIAddr(s string, src netip.Addr) (string, netip.AddrPort) {
	parts := strings.Split(s, "/")
	if len(parts) < 4 {
		return "", netip.AddrPort{}
	}
	a, err := netip.ParseAddr(strings.Join(parts[2:len(parts)-1], "/"))
	if err != nil {
		return parts[1], netip.AddrPort{}
	}
	if a.IsLoopback() {
		a = src
	}
	port, err := strconv.ParseUint(parts[len(parts)-1], 10, 16)
	if err != nil {
		return parts[1], netip.AddrPort{}
	}
	return parts[1], netip.AddrPortFrom(a, uint16(port))
}

type firewallEntry = firewall.Entry
