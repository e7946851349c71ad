package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/asterisksupport/doorman/firewall"
)

// logOnly is firewall backend "none": it logs what it would do and keeps
// the set in memory, so the agent runs without root (a dry run).
type logOnly struct {
	log *slog.Logger
	mu  sync.Mutex
	set map[netip.Prefix]firewall.Entry
}

func newLogOnly(log *slog.Logger) *logOnly {
	return &logOnly{log: log, set: map[netip.Prefix]firewall.Entry{}}
}

func (f *logOnly) Init(context.Context) error {
	f.log.Warn("firewall backend none: bans are logged, not enforced")
	return nil
}

func (f *logOnly) Add(_ context.Context, es []firewall.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range es {
		f.set[e.Prefix] = e
		f.log.Info("would ban", "prefix", e.Prefix, "timeout", e.Timeout)
	}
	return nil
}

func (f *logOnly) Delete(_ context.Context, ps []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ps {
		delete(f.set, p)
		f.log.Info("would unban", "prefix", p)
	}
	return nil
}

func (f *logOnly) List(context.Context) ([]firewall.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]firewall.Entry, 0, len(f.set))
	for _, e := range f.set {
		out = append(out, e)
	}
	return out, nil
}

func (f *logOnly) Check(context.Context) error { return nil }
func (f *logOnly) Close() error                { return nil }
