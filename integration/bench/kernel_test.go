package bench

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/asterisksupport/doorman/integration/harness"
)

// setWatch reads one nftables set of a host over netlink, fast enough to
// poll every 100 µs.
type setWatch struct {
	ns    *os.File
	conn  *nftables.Conn
	table *nftables.Table
	name  string
	set   *nftables.Set

	mu    sync.Mutex
	first map[netip.Addr]time.Time
	stop  chan struct{}
	done  chan struct{}
}

func openSet(h *harness.Host, table, set string) (*setWatch, error) {
	ns, err := os.Open(h.NSPath())
	if err != nil {
		return nil, err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())), nftables.AsLasting())
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("bench: netlink in %s: %w", h.Name, err)
	}
	return &setWatch{ns: ns, conn: conn, name: set, first: map[netip.Addr]time.Time{},
		table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}}, nil
}

// addrs returns the set's single-address elements; a missing set is empty.
func (w *setWatch) addrs() ([]netip.Addr, error) {
	if w.set == nil {
		s, err := w.conn.GetSetByName(w.table, w.name)
		if err != nil {
			return nil, nil // not created yet (fail2ban makes it at the first ban)
		}
		w.set = s
	}
	els, err := w.conn.GetSetElements(w.set)
	if err != nil {
		w.set = nil
		return nil, err
	}
	out := make([]netip.Addr, 0, len(els))
	for _, e := range els {
		if e.IntervalEnd {
			continue
		}
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// count returns how many distinct elements one dump of the set shows. (A
// dump taken while the kernel resizes the set's hash table, as it does
// after a large insert, can repeat some elements and miss others.)
func (w *setWatch) count() int {
	a, _ := w.addrs()
	seen := make(map[netip.Addr]bool, len(a))
	for _, x := range a {
		seen[x] = true
	}
	return len(seen)
}

// track polls the set every interval in the background and records when
// each address first appears.
func (w *setWatch) track(interval time.Duration) {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			as, _ := w.addrs()
			now := time.Now()
			w.mu.Lock()
			for _, a := range as {
				if _, ok := w.first[a]; !ok {
					w.first[a] = now
				}
			}
			w.mu.Unlock()
			time.Sleep(interval)
		}
	}()
}

// seen returns when a first appeared.
func (w *setWatch) seen(a netip.Addr) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[a]
	return t, ok
}

// stopTrack ends track's polling.
func (w *setWatch) stopTrack() {
	if w.stop != nil {
		close(w.stop)
		<-w.done
		w.stop = nil
	}
}

func (w *setWatch) close() {
	w.stopTrack()
	_ = w.conn.CloseLasting()
	w.ns.Close()
}
