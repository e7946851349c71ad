package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"

	"github.com/asterisksupport/doorman/firewall"
)

// key identifies one set: family (4 or 6) and prefix length.
type key struct{ fam, bits int }

// normalize maps an IPv4-mapped IPv6 prefix to IPv4 and clears host bits, so
// every spelling of a ban lands on one element.
func normalize(p netip.Prefix) (netip.Prefix, key, error) {
	if !p.IsValid() {
		return netip.Prefix{}, key{}, fmt.Errorf("nft: invalid prefix %v", p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, key{}, fmt.Errorf("nft: IPv4-mapped prefix %v shorter than /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	if bits == 0 {
		return netip.Prefix{}, key{}, fmt.Errorf("nft: refusing to ban everything (%v)", p)
	}
	q := netip.PrefixFrom(a, bits).Masked()
	fam := 6
	if a.Is4() {
		fam = 4
	}
	return q, key{fam, bits}, nil
}

// Add bans entries. An entry already present is replaced (delete and add in
// the same batch), so re-adding refreshes its timeout and a temporary ban
// can become permanent or the other way round, on any kernel. Duplicates in
// one call keep the longest ban. Sets for new prefix lengths are created
// first. Entries go in netlink batches of Config.BatchSize; a failed batch
// leaves the earlier ones applied.
func (f *Firewall) Add(ctx context.Context, entries []firewall.Entry) error {
	groups := map[key]map[netip.Prefix]time.Duration{}
	for _, e := range entries {
		p, k, err := normalize(e.Prefix)
		if err != nil {
			return err
		}
		if e.Timeout < 0 {
			return fmt.Errorf("nft: negative timeout %v for %v", e.Timeout, e.Prefix)
		}
		to := e.Timeout
		if to > 0 && to < time.Millisecond {
			to = time.Millisecond // the kernel counts ms; 0 would mean permanent
		}
		if groups[k] == nil {
			// Sized for the usual case, every entry in one set: a map
			// grown by doubling to 100,000 entries allocates twice that.
			groups[k] = make(map[netip.Prefix]time.Duration, len(entries))
		}
		if old, dup := groups[k][p]; dup && (old == 0 || (to != 0 && to < old)) {
			continue
		}
		groups[k][p] = to
	}
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	newLens := false
	for k := range groups {
		if !f.lens[k.fam][k.bits] {
			f.lens[k.fam][k.bits] = true
			newLens = true
		}
	}
	if newLens {
		if err := f.ensure(); err != nil {
			return err
		}
	}
	t := f.table()
	n := 0
	// One batch of elements at a time, in a buffer reused by every batch.
	buf := make([]nftables.SetElement, 0, min(len(entries), f.cfg.BatchSize))
	for k, g := range groups {
		s := f.set(t, k.fam, k.bits)
		present, err := f.present(s, len(g))
		if err != nil {
			return err
		}
		send := func() error {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("nft: add: %w (%d of %d entries applied)", err, n, len(entries))
			}
			if err := f.replace(s, buf, present); err != nil {
				return fmt.Errorf("nft: add to %s: %w", s.Name, err)
			}
			if b, ok := f.bound[s.Name]; ok {
				f.bound[s.Name] = b + len(buf)
			}
			if k := f.known[s.Name]; k != nil {
				for _, e := range buf {
					a, _ := netip.AddrFromSlice(e.Key)
					k[a] = true
				}
			}
			n += len(buf)
			clear(buf)
			buf = buf[:0]
			return nil
		}
		for p, to := range g {
			buf = append(buf, nftables.SetElement{Key: p.Addr().AsSlice(), Timeout: to})
			if len(buf) == f.cfg.BatchSize {
				if err := send(); err != nil {
					return err
				}
			}
		}
		if len(buf) > 0 {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return nil
}

// dumpAbove is the batch size from which Add may read the set first: a
// dump costs about as much as the extra work it saves on a few hundred
// elements, and a restore into an empty set then needs a third of the work.
const dumpAbove = 256

// maxKnown bounds f.known per set (about 40 MB of map at most): it only
// grows between reads, by every key ever added.
const maxKnown = 1 << 20

// present returns the keys the set may hold now, or nil (meaning "assume
// every key may be present"). It reads the set only when that can pay:
// for a large batch into a set that may be small. A dump costs in
// proportion to the set, the add-delete-add form in proportion to the
// batch, so adding a few hundred fresh bans to a set of 100,000 (a flood)
// must not read it, while restoring 100,000 bans into an empty set (start,
// repair) should. f.bound holds an upper bound of each set's size
// (elements seen by the last read, plus every element added since);
// unknown means read.
//
// A restore comes in pages (one Add each), and from the third page on
// the set is too big to read for a page: f.known carries the keys of the
// last read (or of a set Init created empty) plus every key added since,
// from one large Add to the next, so every page is written as plain adds.
// Keys only leave a set (timeouts, deletes) behind doorman's back, so this
// stays a superset of what the set holds while doorman is its only writer.
// Live bans use it too: a fresh attacker's address is not in it, so its ban
// is one plain add instead of add-delete-add (a third of the kernel work of
// a ban). Past maxKnown keys it is dropped, and every write assumes
// presence again until the next read.
func (f *Firewall) present(s *nftables.Set, batch int) (map[netip.Addr]bool, error) {
	if k := f.known[s.Name]; k != nil {
		if len(k) <= maxKnown {
			return k, nil
		}
		delete(f.known, s.Name)
	}
	if batch < dumpAbove {
		return nil, nil
	}
	if b, ok := f.bound[s.Name]; ok && b > 2*batch {
		return nil, nil
	}
	elems, err := f.conn.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("nft: list %s: %w", s.Name, err)
	}
	f.bound[s.Name] = len(elems)
	m := make(map[netip.Addr]bool, len(elems))
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			m[a] = true
		}
	}
	f.known[s.Name] = m
	return m, nil
}

// msgElems is how many elements go into one netlink message: an element
// list is one attribute and must stay under 64 KiB (IPv6 with timeout is
// about 40 bytes an element).
const msgElems = 1000

// replace sends one batch (one transaction): keys that may be present are
// added without timeout (a no-op if present), deleted, and added back with
// their timeout; keys known absent (present is non-nil and lacks them) are
// just added. The first add makes the delete safe for absent elements (one
// missing element would fail the whole batch with ENOENT), and as the batch
// is atomic an existing ban never lapses. An element that expires between
// the dump and the batch is absent and simply re-added.
func (f *Firewall) replace(s *nftables.Set, elems []nftables.SetElement, present map[netip.Addr]bool) error {
	var maybe []nftables.SetElement
	for _, e := range elems {
		if a, _ := netip.AddrFromSlice(e.Key); present == nil || present[a] {
			maybe = append(maybe, nftables.SetElement{Key: e.Key})
		}
	}
	for _, c := range chunks(maybe) {
		if err := f.conn.SetAddElements(s, c); err != nil {
			return err
		}
		if err := f.conn.SetDeleteElements(s, c); err != nil {
			return err
		}
	}
	for _, c := range chunks(elems) {
		if err := f.conn.SetAddElements(s, c); err != nil {
			return err
		}
	}
	return f.conn.Flush()
}

func chunks(elems []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	for len(elems) > 0 {
		n := min(len(elems), msgElems)
		out = append(out, elems[:n])
		elems = elems[n:]
	}
	return out
}

// Delete unbans prefixes; prefixes that are not banned, or whose set or
// table does not exist, are ignored. Each batch adds then deletes the keys, so no batch can
// fail on an absent element, and no read-then-delete race with an expiring
// element exists.
func (f *Firewall) Delete(ctx context.Context, prefixes []netip.Prefix) error {
	groups := map[key][]nftables.SetElement{}
	for _, p := range prefixes {
		q, k, err := normalize(p)
		if err != nil {
			return err
		}
		groups[k] = append(groups[k], nftables.SetElement{Key: q.Addr().AsSlice()})
	}
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	t := f.table()
	sets, err := f.conn.GetSets(t)
	if err != nil {
		if errors.Is(missingOr(err, "sets"), firewall.ErrMissing) {
			return nil // no table, nothing banned
		}
		return fmt.Errorf("nft: list sets: %w", err)
	}
	exists := map[string]bool{}
	for _, s := range sets {
		exists[s.Name] = true
	}
	for k, keys := range groups {
		s := f.set(t, k.fam, k.bits)
		if !exists[s.Name] {
			continue
		}
		for len(keys) > 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("nft: delete: %w", err)
			}
			chunk := keys[:min(len(keys), f.cfg.BatchSize)]
			keys = keys[len(chunk):]
			for _, c := range chunks(chunk) {
				if err := f.conn.SetAddElements(s, c); err != nil {
					return fmt.Errorf("nft: delete from %s: %w", s.Name, err)
				}
				if err := f.conn.SetDeleteElements(s, c); err != nil {
					return fmt.Errorf("nft: delete from %s: %w", s.Name, err)
				}
			}
			if err := f.conn.Flush(); err != nil {
				return fmt.Errorf("nft: delete from %s: %w", s.Name, err)
			}
		}
	}
	return nil
}

// List returns every element of doorman's sets, Timeout being the time left
// (0 for permanent bans). A missing table gives an error wrapping
// firewall.ErrMissing.
func (f *Firewall) List(ctx context.Context) ([]firewall.Entry, error) {
	if err := f.lock(ctx); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	t := f.table()
	sets, err := f.conn.GetSets(t)
	if err != nil {
		return nil, missingOr(err, "sets")
	}
	var out []firewall.Entry
	for _, s := range sets {
		fam, bits, ok := f.parseSetName(s.Name)
		if !ok {
			continue
		}
		s.Table = t
		elems, err := f.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nft: list %s: %w", s.Name, err)
		}
		f.bound[s.Name] = len(elems)
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok || (fam == 4) != a.Is4() {
				f.log.Warn("skipping odd set element", "set", s.Name, "key", fmt.Sprintf("%x", e.Key))
				continue
			}
			left := time.Duration(0)
			if e.Timeout > 0 {
				left = max(e.Expires, time.Millisecond) // never report a timed ban as permanent
			}
			out = append(out, firewall.Entry{Prefix: netip.PrefixFrom(a, bits), Timeout: left})
		}
	}
	return out, nil
}
