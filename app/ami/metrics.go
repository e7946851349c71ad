package ami

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the client's counters as Prometheus metrics
// (doorman_ami_*), read from Stats and Connected at scrape time:
// reg.MustRegister(client.Collectors()...).
func (c *Client) Collectors() []prometheus.Collector {
	counter := func(name, help string, v func(Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "doorman", Subsystem: "ami", Name: name, Help: help},
			func() float64 { return float64(v(c.Stats())) })
	}
	return []prometheus.Collector{
		counter("events_received_total", "Events read from Asterisk (not responses or list items).", func(s Stats) uint64 { return s.EventsReceived }),
		counter("events_dropped_total", "Event deliveries lost to full subscriber buffers.", func(s Stats) uint64 { return s.EventsDropped }),
		counter("reconnects_total", "Connection attempts after the first.", func(s Stats) uint64 { return s.Reconnects }),
		counter("logins_total", "Successful logins.", func(s Stats) uint64 { return s.Logins }),
		counter("login_failures_total", "Logins refused by Asterisk or timed out.", func(s Stats) uint64 { return s.LoginFailures }),
		counter("parse_errors_total", "Malformed lines or messages skipped.", func(s Stats) uint64 { return s.ParseErrors }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "doorman", Subsystem: "ami", Name: "connected", Help: "1 while logged in to Asterisk."},
			func() float64 {
				if c.Connected() {
					return 1
				}
				return 0
			}),
	}
}
