package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

// aclRules is the least a doorman agent needs: its own keys and channels,
// data and pub/sub commands and scripts, nothing dangerous. The pattern
// "{doorman*}" covers the per-test prefixes; in production use
// "~{doorman}:* &{doorman}:*".
const aclRules = "resetchannels ~{doorman*}:* &{doorman*}:* -@all +@read +@write +@keyspace +@pubsub +@scripting +@connection -@dangerous"

const secret = "s3cret-Pa55word"

func TestACLUserRunsTheSuite(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACLUser("doorman", secret, aclRules))
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, redisstore.Config{Addrs: []string{srv.Addr}, Username: "doorman", Password: secret,
			KeyPrefix: "doorman-" + t.Name() + ":"})
	})
	t.Run("OtherKeysDenied", func(t *testing.T) {
		s := open(t, redisstore.Config{Addrs: []string{srv.Addr}, Username: "doorman", Password: secret})
		err := s.Client().Set(context.Background(), "somebody-else", "x", 0).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("write outside doorman's keys: err = %v; want NOPERM", err)
		}
		if err := s.Client().FlushAll(context.Background()).Err(); err == nil {
			t.Fatalf("FLUSHALL allowed")
		}
	})
}

func TestWrongPasswordRefused(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACLUser("doorman", secret, ""))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, cfg := range []redisstore.Config{
		{Addrs: []string{srv.Addr}, Username: "doorman", Password: "wrong-" + secret},
		{Addrs: []string{srv.Addr}}, // no credentials: the default user is off
	} {
		s, err := redisstore.New(context.Background(), cfg, log)
		if err == nil {
			s.Close()
			t.Fatalf("New with bad credentials: no error")
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the password: %v", err)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("log shows the password: %s", logs.String())
	}
}

func TestPasswordOnly(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword(secret))
	cfg, err := redisstore.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, cfg)
	if _, err := s.Incr(context.Background(), "k", time.Minute); err != nil {
		t.Fatalf("Incr: %v", err)
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTLS())
	tlsCfg := redisstore.TLSConfig{Enable: true, CAFile: srv.TLS.CA, ServerName: srv.TLS.ServerName}
	t.Run("Suite", func(t *testing.T) {
		statetest.Run(t, func(t *testing.T) state.Store {
			return open(t, redisstore.Config{Addrs: []string{srv.Addr}, TLS: tlsCfg, KeyPrefix: t.Name() + ":"})
		})
	})
	t.Run("RestartResync", func(t *testing.T) {
		s := open(t, redisstore.Config{Addrs: []string{srv.Addr}, TLS: tlsCfg})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w, err := s.WatchBans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		srv.Restart()
		if e := nextBan(t, w, "after TLS restart"); e.Kind != state.Resync {
			t.Fatalf("got %+v; want Resync", e)
		}
	})
	t.Run("UntrustedCA", func(t *testing.T) {
		_, err := redisstore.New(context.Background(),
			redisstore.Config{Addrs: []string{srv.Addr}, TLS: redisstore.TLSConfig{Enable: true}}, nil)
		if err == nil {
			t.Fatalf("New trusting only system roots: no error")
		}
	})
	t.Run("InsecureSkipVerify", func(t *testing.T) {
		s := open(t, redisstore.Config{Addrs: []string{srv.Addr},
			TLS: redisstore.TLSConfig{Enable: true, InsecureSkipVerify: true}})
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PlainToTLSPortFails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := redisstore.New(ctx, redisstore.Config{Addrs: []string{srv.Addr}, ReadTimeout: 300 * time.Millisecond}, nil)
		if err == nil {
			defer s.Close()
			if s.Ping(ctx) == nil {
				t.Fatalf("plain Ping to a TLS port succeeded")
			}
		}
	})
}

func TestTLSClientCertificate(t *testing.T) {
	srv := redistest.Start(t, redistest.WithClientCerts(), redistest.WithPassword(secret))
	base := redisstore.TLSConfig{Enable: true, CAFile: srv.TLS.CA, ServerName: srv.TLS.ServerName}
	withCert := base
	withCert.CertFile, withCert.KeyFile = srv.TLS.ClientCert, srv.TLS.ClientKey
	s := open(t, redisstore.Config{Addrs: []string{srv.Addr}, Password: secret, TLS: withCert})
	if _, err := s.Incr(context.Background(), "k", time.Minute); err != nil {
		t.Fatalf("Incr with client certificate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s2, err := redisstore.New(ctx, redisstore.Config{Addrs: []string{srv.Addr}, Password: secret, TLS: base}, nil)
	if err == nil {
		defer s2.Close()
		if s2.Ping(ctx) == nil {
			t.Fatalf("Ping without a client certificate succeeded")
		}
	}
	u := fmt.Sprintf("rediss://:%s@%s?ca_file=%s&cert_file=%s&key_file=%s&server_name=localhost",
		secret, srv.Addr, srv.TLS.CA, srv.TLS.ClientCert, srv.TLS.ClientKey)
	cfg, err := redisstore.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := open(t, cfg).Ping(context.Background()); err != nil {
		t.Fatalf("Ping through a rediss:// URL: %v", err)
	}
}

// TestFrozenRedis: a hung server (SIGSTOP, sockets open) is noticed by the
// watch's ping; after it resumes, the watch resyncs and goes on.
func TestFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisstore.Config{Addrs: []string{srv.Addr}, WatchPing: 100 * time.Millisecond,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	s := open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.WatchBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	start := time.Now()
	if err := s.Ping(ctx); err == nil {
		t.Fatalf("Ping of a frozen server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Ping of a frozen server took %v", d)
	}
	time.Sleep(time.Second) // frozen for several ping periods
	srv.Thaw()
	if e := nextBan(t, w, "after thaw"); e.Kind != state.Resync {
		t.Fatalf("got %+v; want Resync", e)
	}
}
