package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// watchBuffer is the feed channel's buffer. A consumer slower than that
// blocks the reader; Redis then buffers, and past its pub/sub output limit
// drops the connection, which ends in a Resync: nothing is lost silently.
const watchBuffer = 1024

var errMissedPong = errors.New("no pong from redis")

// watch subscribes to channel and feeds decoded messages to the returned
// channel until ctx ends or the Store is closed. go-redis's PubSub
// reconnects silently, so the subscription is checked here: a read error,
// a missed pong, or a second subscribe confirmation (go-redis resubscribed
// behind our back) all mean messages may have been lost, and the consumer
// gets resync before anything newer.
// decode may return several events for one message (a batch of bans).
func watch[E any](parent context.Context, s *Store, channel string, decode func(string) ([]E, error), resync E) (<-chan E, error) {
	ctx, cancel := context.WithCancel(parent)
	stopOnClose := context.AfterFunc(s.done, cancel)
	ps, err := s.subscribe(ctx, channel)
	if err != nil {
		stopOnClose()
		cancel()
		return nil, err
	}
	out := make(chan E, watchBuffer)
	go func() {
		defer close(out)
		defer stopOnClose()
		defer cancel()
		backoff := 50 * time.Millisecond
		for {
			err := pump(ctx, s, ps, out, decode, resync)
			_ = ps.Close()
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("redis watch interrupted; resubscribing", "channel", channel, "err", err)
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				ps, err = s.subscribe(ctx, channel)
				if err == nil {
					break
				}
				backoff = min(backoff*2, 2*time.Second)
				s.log.Debug("redis resubscribe failed", "channel", channel, "err", err)
			}
			backoff = 50 * time.Millisecond
			s.log.Info("redis watch resubscribed", "channel", channel)
			select {
			case out <- resync:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// subscribe subscribes and waits for Redis to confirm.
func (s *Store) subscribe(ctx context.Context, channel string) (*redis.PubSub, error) {
	ps := s.rdb.Subscribe(ctx, channel)
	msg, err := ps.ReceiveTimeout(ctx, s.cfg.DialTimeout+s.cfg.ReadTimeout)
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("subscribe %s: %w", channel, err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		_ = ps.Close()
		return nil, fmt.Errorf("subscribe %s: unexpected first reply %T", channel, msg)
	}
	return ps, nil
}

// pump delivers messages until the subscription breaks (returning why) or
// ctx ends.
func pump[E any](ctx context.Context, s *Store, ps *redis.PubSub, out chan<- E, decode func(string) ([]E, error), resync E) error {
	// Unblock a pending read at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.cfg.WatchPing)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !isTimeout(err) {
				return err
			}
			if pinged {
				return errMissedPong
			}
			pctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			err = ps.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			pinged = true
			continue
		}
		pinged = false
		var evs []E
		switch m := msg.(type) {
		case *redis.Message:
			evs, err = decode(m.Payload)
			if err != nil {
				s.log.Warn("skipping undecodable feed message", "channel", m.Channel, "err", err)
				continue
			}
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			evs = []E{resync}
		default: // *redis.Pong
			continue
		}
		for _, ev := range evs {
			select {
			case out <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
