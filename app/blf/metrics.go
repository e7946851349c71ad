package blf

import "github.com/prometheus/client_golang/prometheus"

// metrics are doorman_blf_*.
type metrics struct {
	published prometheus.Counter
	writes    prometheus.Counter
	errors    *prometheus.CounterVec
	latency   prometheus.Histogram
}

// Error causes (the "cause" label of doorman_blf_errors_total).
const (
	causeUnknownState = "unknown_state"   // an event with a state Asterisk does not define
	causeUnmapped     = "unmapped_device" // a device the mapping cannot name
	causeStorePut     = "store_publish"
	causeStoreRead    = "store_read"
	causeStoreWatch   = "store_watch"
	causeHeartbeat    = "heartbeat"
	causeSnapshot     = "ami_snapshot"
	causeARIList      = "ari_list"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "doorman", Subsystem: "blf", Name: "changes_published_total",
			Help: "Local device state changes published to the shared store.",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "doorman", Subsystem: "blf", Name: "stasis_writes_total",
			Help: "Stasis: device states written to the local Asterisk.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "doorman", Subsystem: "blf", Name: "errors_total",
			Help: "Problems by cause: unknown_state, unmapped_device, store_publish, store_read, store_watch, heartbeat, ami_snapshot, ari_list, ari_put_<code|timeout|error>.",
		}, []string{"cause"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "doorman", Subsystem: "blf", Name: "propagation_seconds",
			Help:    "From a device state event on its server to the Stasis: state written here.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.writes, m.errors, m.latency} {
			_ = reg.Register(c) // a second Monitor on one registry keeps its own, unexported, counters
		}
	}
	return m
}
