package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asterisksupport/doorman/app/state/redistest"
)

func client(t *testing.T, s *redistest.Server) *redis.Client {
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS != nil {
		if opt.TLSConfig, err = s.TLS.ClientConfig(); err != nil {
			t.Fatal(err)
		}
	}
	opt.DisableIdentity, opt.Protocol, opt.MaxRetries = true, 2, -1
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRestartKeepsDataOnlyWithPersistence(t *testing.T) {
	ctx := context.Background()
	for _, persist := range []bool{false, true} {
		var opts []redistest.Option
		if persist {
			opts = append(opts, redistest.WithPersistence())
		}
		s := redistest.Start(t, opts...)
		c := client(t, s)
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		addr := s.Addr
		s.Restart()
		if s.Addr != addr || !s.Running() {
			t.Fatalf("restarted on %s (running %v); want %s", s.Addr, s.Running(), addr)
		}
		got, err := c.Get(ctx, "k").Result()
		if persist && got != "v" || !persist && err != redis.Nil {
			t.Fatalf("persistence %v: after restart Get = %q, %v", persist, got, err)
		}
		s.Stop()
		if s.Running() {
			t.Fatalf("still running after Stop")
		}
		if c.Ping(ctx).Err() == nil {
			t.Fatalf("Ping after Stop succeeded")
		}
	}
}

func TestAuthAndTLS(t *testing.T) {
	ctx := context.Background()
	for name, s := range map[string]*redistest.Server{
		"password": redistest.Start(t, redistest.WithPassword("pw")),
		"acl":      redistest.Start(t, redistest.WithACLUser("u", "pw", "")),
		"tls":      redistest.Start(t, redistest.WithClientCerts(), redistest.WithACLUser("u", "pw", "")),
	} {
		if err := client(t, s).Ping(ctx).Err(); err != nil {
			t.Errorf("%s: Ping: %v", name, err)
		}
		anon := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second})
		if anon.Ping(ctx).Err() == nil {
			t.Errorf("%s: Ping without credentials succeeded", name)
		}
		_ = anon.Close()
	}
}
