package ipset

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/asterisksupport/doorman/firewall"
)

// Init creates the four sets (idempotently: an identical existing set is
// kept with its entries) and inserts each set's raw-table DROP rule unless
// present. It does not restore bans, the caller's job after a flush.
func (f *Firewall) Init(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	clear(f.known) // an existing set is kept with whatever it holds
	added := 0
	for _, s := range f.sets() {
		opts := netlink.IpsetCreateOptions{Replace: true, Family: unix.AF_INET, MaxElements: f.cfg.MaxElem}
		if s.v6 {
			opts.Family = unix.AF_INET6
		}
		if !s.perm {
			t := uint32(DefaultSetTimeout)
			opts.Timeout = &t
		}
		if err := f.h.IpsetCreate(s.name, "hash:net", opts); err != nil {
			return fmt.Errorf("ipset: create %s (an existing set of that name with other options must be destroyed first): %w",
				s.name, kernelError(err))
		}
		a, err := f.ensureRule(ctx, s)
		if err != nil {
			return err
		}
		if a {
			added++
		}
	}
	if added > 0 {
		f.log.Info("firewall structure ready", "rules_added", added)
	}
	return nil
}

// Check returns an error wrapping firewall.ErrMissing if a set or a rule is
// gone.
func (f *Firewall) Check(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	for _, s := range f.sets() {
		if err := f.mustExist(s); err != nil {
			return err
		}
		switch err := f.runRule(ctx, "-C", s); {
		case errors.Is(err, errNoRule):
			return fmt.Errorf("ipset: raw PREROUTING rule for %s: %w", s.name, firewall.ErrMissing)
		case err != nil:
			return err
		}
	}
	return nil
}

// mustExist wraps ErrMissing if the set is gone.
func (f *Firewall) mustExist(s set) error {
	ok, err := exists(f.sock, s.name)
	if err != nil {
		return fmt.Errorf("ipset: header of %s: %w", s.name, err)
	}
	if !ok {
		return fmt.Errorf("ipset: set %s: %w", s.name, firewall.ErrMissing)
	}
	return nil
}

// header lists a set without its entries' details mattering; a missing set
// wraps ErrMissing.
func (f *Firewall) header(s set) (*netlink.IPSetResult, error) {
	r, err := f.h.IpsetList(s.name)
	if err != nil {
		err = kernelError(err)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_PROTOCOL)) ||
			err.Error() == nl.IPSetError(nl.IPSET_ERR_EXIST).Error() {
			return nil, fmt.Errorf("ipset: set %s: %w (%v)", s.name, firewall.ErrMissing, err)
		}
		return nil, fmt.Errorf("ipset: list %s: %w", s.name, err)
	}
	return r, nil
}

// Teardown removes the raw-table rules and destroys the four sets: what an
// operator runs when switching doorman off or to the nftables backend.
// Absent rules and sets are ignored.
func (f *Firewall) Teardown(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	var errs []error
	for _, s := range f.sets() {
		if err := f.mustExist(s); errors.Is(err, firewall.ErrMissing) {
			continue // a rule cannot reference a set that does not exist
		}
		for {
			err := f.runRule(ctx, "-C", s)
			if errors.Is(err, errNoRule) {
				break
			}
			if err == nil {
				err = f.runRule(ctx, "-D", s)
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	for _, s := range f.sets() {
		if err := f.mustExist(s); errors.Is(err, firewall.ErrMissing) {
			continue
		}
		if err := f.h.IpsetDestroy(s.name); err != nil {
			errs = append(errs, fmt.Errorf("ipset: destroy %s: %w", s.name, kernelError(err)))
		}
	}
	return errors.Join(errs...)
}

// normalize maps IPv4-mapped prefixes to IPv4 and clears host bits.
func normalize(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("ipset: invalid prefix %v", p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("ipset: IPv4-mapped prefix %v shorter than /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	if bits == 0 {
		return netip.Prefix{}, fmt.Errorf("ipset: refusing to ban everything (%v)", p)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// seconds rounds a timeout up to whole seconds (ipset's unit), at least 1.
func seconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	return uint32(min(max(s, 1), 2147483)) // the kernel caps timeouts at 2,147,483 s
}

// Add bans entries: temporary ones go to the timeout set (re-adding
// refreshes the timeout; timeouts are rounded up to whole seconds),
// permanent ones to the -perm set; each is removed from the other set of its
// family, so a ban can turn permanent or back. Duplicates in one call keep
// the longest ban.
func (f *Firewall) Add(ctx context.Context, entries []firewall.Entry) error {
	want := map[netip.Prefix]time.Duration{}
	for _, e := range entries {
		p, err := normalize(e.Prefix)
		if err != nil {
			return err
		}
		if e.Timeout < 0 {
			return fmt.Errorf("ipset: negative timeout %v for %v", e.Timeout, e.Prefix)
		}
		if old, dup := want[p]; dup && (old == 0 || (e.Timeout != 0 && e.Timeout < old)) {
			continue
		}
		want[p] = e.Timeout
	}
	groups := map[set][]item{}
	for p, to := range want {
		in, _ := f.setFor(p.Addr().Is6(), to == 0)
		it := item{p: p}
		if to > 0 {
			it.timeout = seconds(to)
		}
		groups[in] = append(groups[in], it)
	}
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	for in, items := range groups {
		_, other := f.setFor(in.v6, in.perm)
		// Add first, then remove from the other set: the ban never lapses.
		if err := f.writeBatches(ctx, nl.IPSET_CMD_ADD, in, items); err != nil {
			return err
		}
		stale, err := f.inSet(other, items)
		if err != nil {
			return err
		}
		if err := f.writeBatches(ctx, nl.IPSET_CMD_DEL, other, stale); err != nil {
			return err
		}
	}
	return nil
}

// Delete unbans prefixes from both sets of their family; absent entries,
// and sets that no longer exist, are ignored.
func (f *Firewall) Delete(ctx context.Context, prefixes []netip.Prefix) error {
	var v4, v6 []item
	for _, p := range prefixes {
		q, err := normalize(p)
		if err != nil {
			return err
		}
		if q.Addr().Is6() {
			v6 = append(v6, item{p: q})
		} else {
			v4 = append(v4, item{p: q})
		}
	}
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	for _, s := range f.sets() {
		items := v4
		if s.v6 {
			items = v6
		}
		if len(items) == 0 {
			continue
		}
		if err := f.mustExist(s); errors.Is(err, firewall.ErrMissing) {
			continue
		}
		if err := f.writeBatches(ctx, nl.IPSET_CMD_DEL, s, items); err != nil {
			return err
		}
	}
	return nil
}

// dumpAbove is the batch size from which Add lists the other set instead of
// deleting every entry from it blindly: a restore of permanent bans then
// skips 100,000 pointless deletes from the (usually small) timeout set.
const dumpAbove = 256

// inSet returns the items that s may hold: all of them for small batches,
// else those a listing of s shows (or f.known, kept since the last one).
func (f *Firewall) inSet(s set, items []item) ([]item, error) {
	if len(items) < dumpAbove {
		return items, nil
	}
	have := f.known[s.name]
	if have == nil {
		r, err := f.header(s)
		if err != nil {
			return nil, err
		}
		have = make(map[netip.Prefix]bool, len(r.Entries))
		for _, e := range r.Entries {
			if a, ok := netip.AddrFromSlice(e.IP); ok {
				have[netip.PrefixFrom(a.Unmap(), int(e.CIDR))] = true
			}
		}
		f.known[s.name] = have
	}
	var out []item
	for _, it := range items {
		if have[it.p] {
			out = append(out, it)
		}
	}
	return out, nil
}

func (f *Firewall) writeBatches(ctx context.Context, cmd int, s set, items []item) error {
	verb := map[int]string{nl.IPSET_CMD_ADD: "add to", nl.IPSET_CMD_DEL: "delete from"}[cmd]
	for len(items) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipset: %s %s: %w", verb, s.name, err)
		}
		chunk := items[:min(len(items), f.cfg.BatchSize)]
		items = items[len(chunk):]
		if err := f.w.write(cmd, s.name, chunk); err != nil {
			delete(f.known, s.name) // part of the message may have been applied
			return fmt.Errorf("ipset: %s %s: %w", verb, s.name, err)
		}
		if k := f.known[s.name]; k != nil && cmd == nl.IPSET_CMD_ADD {
			for _, it := range chunk {
				k[it.p] = true
			}
		}
		if _, ok := f.w.(*netlinkWriter); ok || cmd != nl.IPSET_CMD_ADD {
			continue
		}
		// nadoo never reads replies: test the batch's last entry over
		// netlink, so a missing set is reported rather than ignored.
		last := chunk[len(chunk)-1].p
		ok, err := f.h.IpsetTest(s.name, &netlink.IPSetEntry{IP: net.IP(last.Addr().AsSlice()), CIDR: uint8(last.Bits())})
		if err != nil {
			return fmt.Errorf("ipset: verify add to %s: %w", s.name, kernelError(err))
		}
		if !ok {
			return fmt.Errorf("ipset: add to %s: %v not in the set after a nadoo write", s.name, last)
		}
	}
	return nil
}

// List returns the entries of the four sets, Timeout being the time left
// (rounded to seconds by the kernel) or 0 for permanent bans.
func (f *Firewall) List(ctx context.Context) ([]firewall.Entry, error) {
	if err := f.lock(ctx); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	clear(f.known) // bounds its growth: the next large add lists afresh
	var out []firewall.Entry
	for _, s := range f.sets() {
		r, err := f.header(s)
		if err != nil {
			return nil, err
		}
		for _, e := range r.Entries {
			a, ok := netip.AddrFromSlice(e.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			bits := int(e.CIDR)
			if bits == 0 {
				bits = a.BitLen()
			}
			var left time.Duration
			if !s.perm && e.Timeout != nil {
				// 0 s left but still listed: about to expire, not permanent.
				left = max(time.Duration(*e.Timeout)*time.Second, time.Millisecond)
			}
			out = append(out, firewall.Entry{Prefix: netip.PrefixFrom(a, bits), Timeout: left})
		}
	}
	return out, nil
}
