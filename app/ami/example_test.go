package ami_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/asterisksupport/doorman/app/ami"
)

// How a job uses the client: subscribe, resync on EventConnected, decode
// security events.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.Default()
	c := ami.NewClient(ami.Config{Addr: "127.0.0.1:5038", Username: "doorman", Secret: "from-a-secret-file"}, log)
	events, unsubscribe := c.Subscribe(1024)
	defer unsubscribe()
	go func() { _ = c.Run(ctx) }()

	for m := range events {
		switch {
		case m.Event() == ami.EventConnected:
			actx, done := context.WithTimeout(ctx, 10*time.Second)
			_, contacts, err := c.Action(actx, ami.Message{Fields: []ami.Field{{Key: "Action", Value: "PJSIPShowContacts"}}})
			done()
			if err != nil {
				log.Warn("resync failed", "err", err)
				continue
			}
			for _, ct := range contacts {
				_ = ct.Get("Uri") // ... and RegServer, ExpirationTime, UserAgent
			}
		case ami.IsSecurityEvent(&m):
			ev, err := ami.ParseSecurityEvent(&m)
			if err != nil {
				log.Warn("bad security event", "err", err) // never log m itself
				continue
			}
			_ = ev.Remote.Addr()
		}
	}
}
