// Package fake is an in-memory firewall.Firewall for other packages' unit
// tests: no root, no kernel. It keeps entries with their expiry on a clock the
// test controls, records every call, can simulate someone flushing the ruleset
// (Check then wraps firewall.ErrMissing until Init) and can fail chosen calls.
package fake

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/firewall"
)

// Call is one recorded method call.
type Call struct {
	Method   string           // "Init", "Add", "Delete", "List", "Check", "Close"
	Entries  []firewall.Entry // Add's argument
	Prefixes []netip.Prefix   // Delete's argument
}

// Firewall is the fake. The zero value is not usable: call New.
type Firewall struct {
	mu      sync.Mutex
	now     func() time.Time
	inited  bool
	closed  bool
	entries map[netip.Prefix]time.Time // expiry; zero time = permanent
	calls   []Call
	errs    map[string]error
}

var _ firewall.Firewall = (*Firewall)(nil)

// New returns an empty fake that needs Init, like a real backend. now is the
// clock for timeouts (nil means time.Now).
func New(now func() time.Time) *Firewall {
	if now == nil {
		now = time.Now
	}
	return &Firewall{now: now, entries: map[netip.Prefix]time.Time{}, errs: map[string]error{}}
}

// FailNext makes the next call of method return err (nil clears it).
func (f *Firewall) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

// Flush simulates `nft flush ruleset` or `ipset destroy`: every entry and the
// structure are gone until Init.
func (f *Firewall) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inited = false
	clear(f.entries)
}

// Calls returns a copy of the calls so far.
func (f *Firewall) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Has reports whether p (normalised to its network) is banned now.
func (f *Firewall) Has(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	_, ok := f.entries[p.Masked()]
	return ok
}

// Blocks reports whether any banned prefix contains a.
func (f *Firewall) Blocks(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	for p := range f.entries {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// begin records a call and returns the injected error, if any, or an error
// for a closed fake or a cancelled context.
func (f *Firewall) begin(ctx context.Context, c Call) error {
	f.calls = append(f.calls, c)
	if err, ok := f.errs[c.Method]; ok && err != nil {
		delete(f.errs, c.Method)
		return err
	}
	if f.closed {
		return fmt.Errorf("fake: %s after Close", c.Method)
	}
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("fake: %s: %w", c.Method, err)
		}
	}
	return nil
}

func (f *Firewall) expire() {
	now := f.now()
	for p, exp := range f.entries {
		if !exp.IsZero() && !now.Before(exp) {
			delete(f.entries, p)
		}
	}
}

func (f *Firewall) missing(method string) error {
	if !f.inited {
		return fmt.Errorf("fake: %s: %w", method, firewall.ErrMissing)
	}
	return nil
}

// Init creates the (pretend) structure. Idempotent; entries are untouched.
func (f *Firewall) Init(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, Call{Method: "Init"}); err != nil {
		return err
	}
	f.inited = true
	return nil
}

// Add bans entries; re-adding replaces the timeout. It validates like the
// real backends: invalid or /0 prefixes and negative timeouts fail the call.
func (f *Firewall) Add(ctx context.Context, entries []firewall.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, Call{Method: "Add", Entries: slices.Clone(entries)}); err != nil {
		return err
	}
	if err := f.missing("Add"); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Prefix.IsValid() || e.Prefix.Bits() == 0 || e.Timeout < 0 {
			return fmt.Errorf("fake: bad entry %v timeout %v", e.Prefix, e.Timeout)
		}
	}
	now := f.now()
	for _, e := range entries {
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		f.entries[e.Prefix.Masked()] = exp
	}
	return nil
}

// Delete unbans prefixes; absent ones are ignored.
func (f *Firewall) Delete(ctx context.Context, prefixes []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, Call{Method: "Delete", Prefixes: slices.Clone(prefixes)}); err != nil {
		return err
	}
	if err := f.missing("Delete"); err != nil {
		return err
	}
	for _, p := range prefixes {
		delete(f.entries, p.Masked())
	}
	return nil
}

// List returns the entries, sorted by prefix, with the time left.
func (f *Firewall) List(ctx context.Context) ([]firewall.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, Call{Method: "List"}); err != nil {
		return nil, err
	}
	if err := f.missing("List"); err != nil {
		return nil, err
	}
	f.expire()
	now := f.now()
	out := make([]firewall.Entry, 0, len(f.entries))
	for p, exp := range f.entries {
		e := firewall.Entry{Prefix: p}
		if !exp.IsZero() {
			e.Timeout = exp.Sub(now)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b firewall.Entry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

// Check wraps firewall.ErrMissing before Init and after Flush.
func (f *Firewall) Check(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, Call{Method: "Check"}); err != nil {
		return err
	}
	return f.missing("Check")
}

// Close marks the fake closed; later calls fail.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(context.Background(), Call{Method: "Close"}); err != nil {
		return err
	}
	f.closed = true
	return nil
}
