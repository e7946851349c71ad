package ariproxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"by node", Config{NATSURL: "nats://127.0.0.1:4222", Node: "02:00:00:00:00:0a"}, ""},
		{"by system name", Config{NATSURL: "nats://a:4222,nats://b:4222", SystemName: "aim-a"}, ""},
		{"no url", Config{Node: "x"}, "nats_url: required"},
		{"rabbitmq", Config{NATSURL: "amqp://guest:guest@rabbit:5672/", Node: "x"}, "want nats:// or tls://"},
		{"not a url", Config{NATSURL: "127.0.0.1:4222", Node: "x"}, "nats_url"},
		{"no node", Config{NATSURL: "nats://127.0.0.1:4222"}, "node: required"},
		{"wildcard node", Config{NATSURL: "nats://127.0.0.1:4222", Node: "a.>"}, "node"},
		{"dotted application", Config{NATSURL: "nats://127.0.0.1:4222", Node: "x", Application: "door.man"}, "application"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestURLCredentialsNeverLogged(t *testing.T) {
	cfg := Config{NATSURL: "nats://doorman:s3cret@127.0.0.1:4222", Node: "x"}
	if v := cfg.LogValue().String(); strings.Contains(v, "s3cret") {
		t.Fatalf("password in log value: %s", v)
	}
	cfg.NATSURL = "ftp://doorman:s3cret@127.0.0.1:4222"
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks or is missing: %v", err)
	}
}

// TestNATSDownAtStart: New returns at once and reports why it is down.
func TestNATSDownAtStart(t *testing.T) {
	c, err := New(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", Node: "x", RetryInterval: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := c.Status()
		if !st.Connected && strings.Contains(st.Err, "NATS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.SetStasisState(context.Background(), "Stasis:1", "BUSY"); !errors.Is(err, ErrNATSDown) {
		t.Fatalf("write without NATS: %v", err)
	}
	c.Close()
	if _, ok := <-c.Events(); ok {
		t.Fatal("Events not closed by Close")
	}
}
