package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/asterisksupport/doorman/firewall"
)

func (f *Firewall) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: f.cfg.Table}
}

func (f *Firewall) chain(t *nftables.Table) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: DefaultChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw,
		Policy: &policy,
	}
}

// setName names the set of one family (4 or 6) and prefix length.
func (f *Firewall) setName(fam, bits int) string {
	base := f.cfg.Set4
	if fam == 6 {
		base = f.cfg.Set6
	}
	return base + "_" + strconv.Itoa(bits)
}

// parseSetName is setName's inverse; ok is false for sets doorman does not own.
func (f *Firewall) parseSetName(name string) (fam, bits int, ok bool) {
	for _, c := range []struct {
		fam  int
		base string
		max  int
	}{{4, f.cfg.Set4, 32}, {6, f.cfg.Set6, 128}} {
		rest, found := strings.CutPrefix(name, c.base+"_")
		if !found {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > c.max || strconv.Itoa(n) != rest {
			return 0, 0, false
		}
		return c.fam, n, true
	}
	return 0, 0, false
}

// set describes a ban set for the element calls. HasTimeout must be set, or
// google/nftables silently drops element timeouts.
func (f *Firewall) set(t *nftables.Table, fam, bits int) *nftables.Set {
	s := &nftables.Set{Table: t, Name: f.setName(fam, bits), HasTimeout: true, KeyType: nftables.TypeIPAddr}
	if fam == 6 {
		s.KeyType = nftables.TypeIP6Addr
	}
	return s
}

// ruleExprs matches IPv4/IPv6 sources whose first bits are in the set and
// drops them. The nfproto check comes first: in an inet table an IPv6 packet
// would otherwise be read at IPv4 offsets.
func ruleExprs(s *nftables.Set, fam, bits int) []expr.Any {
	proto, off, size := byte(unix.NFPROTO_IPV4), uint32(12), 4
	if fam == 6 {
		proto, off, size = unix.NFPROTO_IPV6, 8, 16
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(size)},
	}
	if bits < size*8 {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(size),
			Mask: mask(size, bits), Xor: make([]byte, size)})
	}
	return append(e,
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop})
}

func mask(size, bits int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = ^byte(0xff >> bits)
			bits = 0
		}
	}
	return m
}

// ruleSet returns the name of the set a rule of ours drops from, or "".
func ruleSet(r *nftables.Rule) string {
	var name string
	drop := false
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			if !e.Invert {
				name = e.SetName
			}
		case *expr.Verdict:
			drop = e.Kind == expr.VerdictDrop
		}
	}
	if !drop {
		return ""
	}
	return name
}

// Init creates the table, the chain, the sets of every known length and
// their drop rules where missing. It never deletes anything, and does not
// restore bans (the caller's job after a flush).
func (f *Firewall) Init(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	// Learn lengths from sets a previous run created, so Init keeps them.
	sets, err := f.conn.GetSets(f.table())
	existed := map[string]bool{}
	for _, s := range sets {
		existed[s.Name] = true
		if fam, bits, ok := f.parseSetName(s.Name); ok {
			f.lens[fam][bits] = true
		}
	}
	if err := f.ensure(); err != nil {
		return err
	}
	// Sets created just now are empty (after a flush, say): the restore
	// that follows may skip reading them (see present).
	known := err == nil || errors.Is(missingOr(err, "sets"), firewall.ErrMissing)
	for _, fam := range []int{4, 6} {
		for bits := range f.lens[fam] {
			name := f.setName(fam, bits)
			delete(f.known, name)
			switch {
			case !known:
				delete(f.bound, name)
			case !existed[name]:
				f.bound[name] = 0
				f.known[name] = map[netip.Addr]bool{}
			}
		}
	}
	return nil
}

// ensure creates whatever of the table, chain, the sets in f.lens and their
// rules is missing. Called with f.mu held.
func (f *Firewall) ensure() error {
	t := f.conn.AddTable(f.table())
	ch := f.conn.AddChain(f.chain(t))
	for _, fam := range []int{4, 6} {
		for _, bits := range sortedKeys(f.lens[fam]) {
			if err := f.conn.AddSet(f.set(t, fam, bits), nil); err != nil {
				return fmt.Errorf("nft: add set %s: %w", f.setName(fam, bits), err)
			}
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nft: create table %s: %w", f.cfg.Table, err)
	}
	rules, err := f.conn.GetRules(t, ch)
	if err != nil {
		return fmt.Errorf("nft: list rules: %w", err)
	}
	have := map[string]bool{}
	for _, r := range rules {
		have[ruleSet(r)] = true
	}
	added := 0
	for _, fam := range []int{4, 6} {
		for _, bits := range sortedKeys(f.lens[fam]) {
			s := f.set(t, fam, bits)
			if have[s.Name] {
				continue
			}
			f.conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ruleExprs(s, fam, bits)})
			added++
		}
	}
	if added == 0 {
		return nil
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nft: add drop rules: %w", err)
	}
	f.log.Info("firewall structure ready", "rules_added", added)
	return nil
}

// Check returns an error wrapping firewall.ErrMissing if the table, the
// chain (at prerouting, priority raw), a known set or its drop rule is gone.
func (f *Firewall) Check(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	t := f.table()
	if _, err := f.conn.ListTableOfFamily(t.Name, t.Family); err != nil {
		return missingOr(err, "table inet "+t.Name)
	}
	ch, err := f.conn.ListChain(t, DefaultChain)
	if err != nil {
		return missingOr(err, "chain "+DefaultChain)
	}
	if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookPrerouting ||
		ch.Priority == nil || *ch.Priority != *nftables.ChainPriorityRaw {
		return fmt.Errorf("nft: chain %s is not at prerouting priority raw: %w", DefaultChain, firewall.ErrMissing)
	}
	sets, err := f.conn.GetSets(t)
	if err != nil {
		return missingOr(err, "sets")
	}
	rules, err := f.conn.GetRules(t, ch)
	if err != nil {
		return missingOr(err, "rules")
	}
	haveSet, haveRule := map[string]bool{}, map[string]bool{}
	for _, s := range sets {
		haveSet[s.Name] = true
	}
	for _, r := range rules {
		haveRule[ruleSet(r)] = true
	}
	for _, fam := range []int{4, 6} {
		for _, bits := range sortedKeys(f.lens[fam]) {
			name := f.setName(fam, bits)
			if !haveSet[name] {
				return fmt.Errorf("nft: set %s: %w", name, firewall.ErrMissing)
			}
			if !haveRule[name] {
				return fmt.Errorf("nft: drop rule for set %s: %w", name, firewall.ErrMissing)
			}
		}
	}
	return nil
}

// missingOr wraps ErrMissing when the kernel said "no such object".
func missingOr(err error, what string) error {
	if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file") {
		return fmt.Errorf("nft: %s: %w (%v)", what, firewall.ErrMissing, err)
	}
	return fmt.Errorf("nft: list %s: %w", what, err)
}

func sortedKeys(m map[int]bool) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Teardown deletes doorman's table with its chain, sets and bans: what an
// operator runs when switching doorman off or to the ipset backend. A
// missing table is fine. Other tables are never touched.
func (f *Firewall) Teardown(ctx context.Context) error {
	if err := f.lock(ctx); err != nil {
		return err
	}
	defer f.mu.Unlock()
	t := f.table()
	if _, err := f.conn.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(missingOr(err, "table"), firewall.ErrMissing) {
			return nil
		}
		return fmt.Errorf("nft: list table: %w", err)
	}
	f.conn.DelTable(t)
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nft: delete table %s: %w", t.Name, err)
	}
	return nil
}
