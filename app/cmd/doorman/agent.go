package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/asterisksupport/doorman/app/ami"
	"github.com/asterisksupport/doorman/app/api"
	"github.com/asterisksupport/doorman/app/ari"
	"github.com/asterisksupport/doorman/app/ari/ariproxy"
	"github.com/asterisksupport/doorman/app/blf"
	"github.com/asterisksupport/doorman/app/config"
	"github.com/asterisksupport/doorman/app/finder"
	"github.com/asterisksupport/doorman/app/intrusion"
	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/ipset"
	"github.com/asterisksupport/doorman/firewall/nft"
)

// runAgent wires the jobs explicitly: AMI and ARI are the event sources,
// intrusion/finder/blf decide, the firewall, the store and ARI writes are
// the effects.
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/doorman/doorman.yaml", "config file")
	jsonLogs := fs.Bool("json", false, "log as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, *jsonLogs)
	log.Info("doorman agent starting", "version", version, "server", cfg.Server.Name,
		"intrusion", cfg.Jobs.Intrusion, "finder", cfg.Jobs.Finder, "blf", cfg.Jobs.BLF)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()

	g, ctx := errgroup.WithContext(ctx)
	amiClient := ami.NewClient(ami.Config{
		Addr: cfg.AMI.Addr, Username: cfg.AMI.Username, Secret: cfg.AMI.Secret, UseMD5: cfg.AMI.MD5,
		// Under an attack (events less than 2 ms apart) read AMI every
		// 1 ms instead of once per event: a wake-up per event was most
		// of the agent's CPU per failed attempt, and each read is still
		// one (its timer). A ban waits up to 1 ms more (p99 target 5 ms).
		// 500 µs cost 25% more CPU per attempt (IntrusionCPU); 2 ms saved
		// little more and let a fast attacker get a few more answers past
		// the threshold.
		Coalesce: time.Millisecond,
	}, log.With("component", "ami"))
	reg.MustRegister(amiClient.Collectors()...)
	g.Go(func() error { return amiClient.Run(ctx) })

	health := map[string]func() error{
		"ami": func() error {
			if st := amiClient.Status(); !st.Connected {
				return fmt.Errorf("not connected: %s", st.LastError)
			}
			return nil
		},
		"store": func() error {
			pctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return store.Ping(pctx)
		},
	}
	deps := api.Deps{Health: health, Gatherer: reg, Log: log.With("component", "api")}

	if cfg.Jobs.Intrusion {
		mon, err := startIntrusion(ctx, g, cfg, store, amiClient, reg, log)
		if err != nil {
			return err
		}
		deps.Bans = bansView{mon}
		health["intrusion"] = func() error {
			if !mon.Ready() {
				return errors.New("not following the ban feed yet (bans are still enforced locally)")
			}
			return nil
		}
	}
	if cfg.Jobs.Finder {
		tracker, err := finder.NewTracker(cfg.Finder, finder.TrackerDeps{AMI: amiClient, Store: store,
			Log: log.With("component", "finder"), Registerer: reg})
		if err != nil {
			return err
		}
		agi, err := finder.NewAGIServer(cfg.Finder, finder.AGIDeps{Store: store, Local: tracker, Log: log.With("component", "finder"), Registerer: reg})
		if err != nil {
			return err
		}
		g.Go(func() error { return tracker.Run(ctx) })
		g.Go(func() error { return agi.Run(ctx) })
		health["finder"] = tracker.Ready
		deps.Whereis = func(ctx context.Context, ext, account string) (any, error) {
			return cfg.Finder.Whereis(ctx, store, ext, account)
		}
	}
	if cfg.Jobs.BLF {
		mon, err := startBLF(ctx, g, cfg, store, amiClient, reg, log)
		if err != nil {
			return err
		}
		health["blf"] = mon.Health
		deps.Lamps = func(ctx context.Context) (any, error) { return mon.Lamps(ctx) }
	}
	if cfg.API.Listen != "" {
		srv, err := api.New(api.Config{Listen: cfg.API.Listen, Token: cfg.API.Token}, deps)
		if err != nil {
			return err
		}
		g.Go(func() error { return srv.Run(ctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("doorman agent stopped")
	return err
}

func startIntrusion(ctx context.Context, g *errgroup.Group, cfg config.Config, store state.Store,
	amiClient *ami.Client, reg prometheus.Registerer, log *slog.Logger) (*intrusion.Monitor, error) {
	fw, err := newFirewall(cfg, log.With("component", "firewall"))
	if err != nil {
		return nil, err
	}
	mon, err := intrusion.New(cfg.Intrusion, intrusion.Deps{Store: store, Firewall: fw, Server: cfg.Server.Name,
		Log: log.With("component", "intrusion"), Metrics: reg})
	if err != nil {
		return nil, err
	}
	bad := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "doorman", Subsystem: "ami",
		Name: "security_events_unparsable_total", Help: "Security events whose fields did not parse."})
	reg.MustRegister(bad)
	// The monitor runs on the AMI reader itself: no goroutine hand-off (a
	// wake-up of another thread) per event. Events are collected as they
	// are parsed and handled when the reader has delivered a read's worth,
	// so the fresh bans of one read go to the kernel in one call, made by
	// the reader. Both functions run on the reader goroutine, in turn.
	var evs []ami.SecurityEvent
	cancelEvents := amiClient.OnEvent(func(m *ami.Message) {
		if !ami.IsSecurityEvent(m) {
			return
		}
		ev, err := ami.ParseSecurityEvent(m)
		if err != nil {
			// Never log the raw event: it may carry a key in clear.
			bad.Inc()
			log.Debug("skipping security event", "event", m.Event(), "err", err)
			return
		}
		evs = append(evs, ev)
	})
	cancelBatch := amiClient.OnBatchEnd(func() {
		mon.HandleBatch(evs)
		clear(evs)
		evs = evs[:0]
	})
	cancel := func() { cancelEvents(); cancelBatch() }
	context.AfterFunc(ctx, cancel)
	g.Go(func() error {
		defer fw.Close()
		return mon.Run(ctx)
	})
	return mon, nil
}

func startBLF(ctx context.Context, g *errgroup.Group, cfg config.Config, store state.Store,
	amiClient *ami.Client, reg prometheus.Registerer, log *slog.Logger) (*blf.Monitor, error) {
	var client ari.Client
	var err error
	switch cfg.ARI.Transport {
	case "native":
		client, err = ari.NewNative(ctx, cfg.ARI.NativeConfig, log.With("component", "ari"))
	case "ari-proxy":
		client, err = ariproxy.New(ctx, cfg.ARIProxy(), log.With("component", "ari", "transport", "ari-proxy"))
	default:
		err = fmt.Errorf("ari.transport %q: want native or ari-proxy", cfg.ARI.Transport)
	}
	if err != nil {
		return nil, err
	}
	mon, err := blf.New(cfg.BLF, blf.Deps{Store: store, ARI: client, AMI: amiClient, Server: cfg.Server.Name,
		Log: log.With("component", "blf"), Metrics: reg})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	g.Go(func() error {
		defer client.Close()
		return mon.Run(ctx)
	})
	return mon, nil
}

func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (state.Store, error) {
	if len(cfg.Store.Redis.Addrs) > 0 {
		redisstore.RouteLibraryLogs(log.With("component", "go-redis"))
		return redisstore.New(ctx, cfg.Store.Redis, log.With("component", "redis"))
	}
	log.Info("no store.redis.addrs: using the embedded store (single server)", "path", cfg.Store.EmbeddedPath)
	return embedded.Open(cfg.Store.EmbeddedPath, log.With("component", "store"))
}

func newFirewall(cfg config.Config, log *slog.Logger) (firewall.Firewall, error) {
	switch cfg.Firewall.Backend {
	case "nftables":
		return nft.New(nft.Config{Table: cfg.Firewall.Table, IPv6PrefixLen: cfg.Intrusion.IPv6PrefixLen}, log)
	case "ipset":
		return ipset.New(ipset.Config{Set4: cfg.Firewall.Table + "4", Set6: cfg.Firewall.Table + "6", MaxElem: uint32(cfg.Firewall.MaxElem)}, log)
	case "none":
		return newLogOnly(log), nil
	}
	return nil, fmt.Errorf("firewall.backend %q: want nftables, ipset or none", cfg.Firewall.Backend)
}

// bansView adapts the Intrusion Monitor to the API's operator view.
type bansView struct{ m *intrusion.Monitor }

func (b bansView) List(ctx context.Context) ([]api.BanView, error) {
	// With the store down, List still returns this server's view, with the error.
	infos, err := b.m.List(ctx)
	if err != nil && len(infos) == 0 {
		return nil, err
	}
	out := make([]api.BanView, 0, len(infos))
	for _, i := range infos {
		v := api.BanView{Prefix: i.Prefix.String(), Permanent: i.Permanent, Expires: i.Expires,
			Reason: i.Reason, Server: i.Server, Strikes: i.Strikes, Created: i.Created}
		if !i.Permanent {
			v.TimeLeft = i.TimeLeft.Round(time.Second).String()
		}
		out = append(out, v)
	}
	return out, err
}

func (b bansView) Ban(ctx context.Context, p netip.Prefix, d time.Duration, reason string) error {
	err := b.m.Ban(ctx, p, d, reason)
	if errors.Is(err, intrusion.ErrQueued) {
		return nil // enforced here, reaches the cluster when the store is back
	}
	return err
}

func (b bansView) Unban(ctx context.Context, p netip.Prefix) error { return b.m.Unban(ctx, p) }

func newLogger(w io.Writer, level string, json bool) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lv}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
