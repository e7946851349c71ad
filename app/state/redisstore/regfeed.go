package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asterisksupport/doorman/app/state"
)

// The registration feed ("feed:regs") is published by the scripts that
// write registrations and heartbeats, so a change and its message are one
// atomic step. A message is one letter, then records written as
// "<length>:<bytes>", one per item of that script call:
//
//	A  registration JSON (the stored value)       Added
//	R  id, server\0aor\0contact                   Removed
//	H  server\0heartbeat-expiry-unix-ms           ServerAlive
//	D  server                                     ServerDown
//
// Expiry (a registration's key, a heartbeat's key) publishes nothing: the
// consumer knows both expiry times.

var _ state.RegistrationWatcher = (*Store)(nil)

// WatchRegistrations streams registration and heartbeat changes made by
// any agent until ctx ends. After a resubscribe it sends a Resync event.
func (s *Store) WatchRegistrations(ctx context.Context) (<-chan state.RegistrationEvent, error) {
	ch, err := watch(ctx, s, s.k.regFeed(), decodeRegEvents, state.RegistrationEvent{Kind: state.Resync})
	if err != nil {
		return nil, fmt.Errorf("redisstore: watch registrations: %w", err)
	}
	return ch, nil
}

func decodeRegEvents(payload string) ([]state.RegistrationEvent, error) {
	if payload == "" {
		return nil, fmt.Errorf("registration feed: empty message")
	}
	kind, rest := payload[0], payload[1:]
	var evs []state.RegistrationEvent
	for rest != "" {
		n, tail, ok := strings.Cut(rest, ":")
		size, err := strconv.Atoi(n)
		if !ok || err != nil || size < 0 || size > len(tail) {
			return nil, fmt.Errorf("registration feed: bad record length %.20q", rest)
		}
		rec := tail[:size]
		rest = tail[size:]
		var e state.RegistrationEvent
		switch kind {
		case 'A':
			e.Kind = state.Added
			if err := json.Unmarshal([]byte(rec), &e.Registration); err != nil {
				return nil, fmt.Errorf("registration feed: %w", err)
			}
		case 'R':
			srv, ac, ok1 := strings.Cut(rec, sep)
			aor, contact, ok2 := strings.Cut(ac, sep)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("registration feed: removed id %q is not server, aor, contact", rec)
			}
			e.Kind, e.Registration = state.Removed, state.Registration{Server: srv, AOR: aor, Contact: contact}
		case 'H':
			srv, ms, ok := strings.Cut(rec, sep)
			exp, err := strconv.ParseInt(ms, 10, 64)
			if !ok || err != nil {
				return nil, fmt.Errorf("registration feed: heartbeat %q is not server, expiry", rec)
			}
			e.Kind, e.Registration = state.ServerAlive, state.Registration{Server: srv, Expires: time.UnixMilli(exp)}
		case 'D':
			e.Kind, e.Registration = state.ServerDown, state.Registration{Server: rec}
		default:
			return nil, fmt.Errorf("registration feed: unknown kind %q", kind)
		}
		evs = append(evs, e)
	}
	return evs, nil
}
