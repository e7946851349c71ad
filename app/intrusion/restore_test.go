package intrusion

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/firewall"
)

// pagedStore is a fake store with state.BanScanner: pages of size bans
// cut from one listing, with hook(i) run before page i is handed over.
type pagedStore struct {
	*fakeStore
	size int
	hook func(i int)
}

func (s pagedStore) ScanBans(ctx context.Context, fn func([]state.Ban) error) error {
	list, err := s.ListBans(ctx)
	if err != nil {
		return err
	}
	for i := 0; len(list) > 0; i++ {
		if s.hook != nil {
			s.hook(i)
		}
		n := min(s.size, len(list))
		if err := fn(list[:n:n]); err != nil {
			return err
		}
		list = list[n:]
	}
	return nil
}

// gatedFirewall holds its first Add until release is closed.
type gatedFirewall struct {
	*fakeFirewall
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedFirewall) Add(ctx context.Context, es []firewall.Entry) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.fakeFirewall.Add(ctx, es)
}

// A restore from a paging store reaches the kernel page by page; the
// monitor is not ready while the kernel lacks any of it; an unban and a
// new ban made while the restore runs both hold at the end.
func TestRestoreInPagesReadyOnlyInKernel(t *testing.T) {
	clock := newFakeClock()
	fs := newFakeStore(clock)
	now := clock.Now()
	var perm []netip.Prefix
	for i := range 9 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 32)
		perm = append(perm, p)
		fs.injectSilently(state.Ban{Prefix: p, Permanent: true, Server: "pbx-b", Reason: "test"}, false)
	}
	temp := state.Ban{Prefix: pfx("2001:db8:5::/64"), Expires: now.Add(time.Minute), Server: "pbx-b"}
	fs.injectSilently(temp, false)
	fs.injectSilently(state.Ban{Prefix: pfx("192.0.2.99/32"), Expires: now.Add(-time.Second)}, false) // expired
	added := state.Ban{Prefix: pfx("198.51.100.1/32"), Permanent: true, Server: "pbx-c"}
	unbanned := []netip.Prefix{perm[0], perm[8]}

	var m *Monitor
	unbanErr := make(chan error, 1)
	store := pagedStore{fakeStore: fs, size: 2, hook: func(i int) {
		if i != 1 {
			return
		}
		// Between pages: another agent bans, an operator here unbans one
		// ban already merged and one perhaps still to come.
		fs.inject(added)
		unbanErr <- m.Unban(context.Background(), unbanned[0])
		if err := m.Unban(context.Background(), unbanned[1]); err != nil {
			t.Errorf("Unban: %v", err)
		}
	}}
	fw := &gatedFirewall{fakeFirewall: newFakeFirewall(clock), entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, testConfig(), clock, store, fs, fw, "pbx-a")
	m = h.m
	h.fw = fw.fakeFirewall
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	<-fw.entered
	// The restore is listed and the feed followed, but the kernel is still
	// writing the first page: not ready.
	waitFor(t, "feed followed", m.ready.Load)
	if m.Ready() {
		t.Fatal("Ready while the restore has not reached the kernel")
	}
	if err := <-unbanErr; err != nil {
		t.Fatalf("Unban: %v", err)
	}
	close(fw.release)
	waitFor(t, "ready", m.Ready)
	h.settle()
	waitFor(t, "feed applied", func() bool { in, _ := fw.has(added.Prefix); return in })
	for _, p := range perm[1:8] {
		if in, permanent := fw.has(p); !in || !permanent {
			t.Errorf("%v: in kernel %v, permanent %v; want a permanent ban", p, in, permanent)
		}
	}
	for _, p := range unbanned {
		if in, _ := fw.has(p); in {
			t.Errorf("%v unbanned during the restore is still in the kernel", p)
		}
	}
	if in, permanent := fw.has(temp.Prefix); !in || permanent {
		t.Errorf("temporary ban with time left: in kernel %v, permanent %v", in, permanent)
	}
	if in, _ := fw.has(pfx("192.0.2.99/32")); in {
		t.Error("expired ban restored")
	}
	if fw.adds < 3 {
		t.Errorf("restore took %d Add calls; want one per page", fw.adds)
	}
}

// A failed firewall write makes the monitor unready until the repair that
// follows has put every ban back.
func TestFailedWriteUnreadyUntilRepaired(t *testing.T) {
	h := startMonitor(t, testConfig())
	h.fw.mu.Lock()
	h.fw.addErr = errors.New("netlink: no buffer space")
	h.fw.mu.Unlock()
	h.m.Handle(failed("198.51.100.7:5060", "s1"))
	waitFor(t, "unready after a failed add", func() bool { return !h.m.Ready() })
	if in, _ := h.fw.has(pfx("198.51.100.7/32")); in {
		t.Fatal("the failed add is in the firewall")
	}
	h.fw.mu.Lock()
	h.fw.addErr = nil
	h.fw.mu.Unlock()
	waitFor(t, "ready after the repair", h.m.Ready)
	if in, _ := h.fw.has(pfx("198.51.100.7/32")); !in {
		t.Fatal("ready, but the ban is not in the firewall")
	}
}

// A repair that cannot run (the firewall's Check fails too) is retried:
// once the firewall works again the failed ban is in the kernel and the
// monitor ready, without waiting for the next full resync.
func TestRepairRetriedAfterFailedCheck(t *testing.T) {
	cfg := testConfig()
	cfg.ReconcileInterval = time.Hour // only repairs call Check
	h := startMonitor(t, cfg)
	waitFor(t, "ready", h.m.Ready)
	h.fw.mu.Lock()
	h.fw.addErr = errors.New("netlink: no buffer space")
	h.fw.checkErr = errors.New("netlink: no buffer space")
	h.fw.mu.Unlock()
	h.m.Handle(failed("198.51.100.8:5060", "s1"))
	waitFor(t, "a repair that found Check failing", func() bool {
		h.fw.mu.Lock()
		defer h.fw.mu.Unlock()
		return h.fw.checks > 0
	})
	h.fw.mu.Lock()
	h.fw.addErr, h.fw.checkErr = nil, nil
	h.fw.mu.Unlock()
	waitFor(t, "ban in the firewall after the repair", func() bool { in, _ := h.fw.has(pfx("198.51.100.8/32")); return in })
	waitFor(t, "ready after the repair", h.m.Ready)
}
