package intrusion

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of doorman_intrusion_skipped_total.
const (
	skipIgnored     = "ignored_type"   // not a trigger event (ChallengeSent, ...)
	skipService     = "service"        // service not configured
	skipBadAddress  = "bad_address"    // RemoteAddress missing or unparsable
	skipNeverBan    = "never_ban"      // trusted source
	skipRemoteTrust = "never_ban_feed" // a ban from the feed on a trusted network
	skipBadBan      = "bad_ban"        // a ban from the feed with an invalid prefix
)

// knownTypes bounds the "type" label: anything else counts as "other", so
// odd input cannot blow up the metric's cardinality.
var knownTypes = []string{
	"FailedACL", "InvalidAccountID", "SessionLimit", "MemoryLimit", "LoadAverageLimit",
	"RequestNotSupported", "RequestNotAllowed", "AuthMethodNotAllowed", "RequestBadFormat",
	"SuccessfulAuth", "UnexpectedAddress", "ChallengeResponseFailed", "InvalidPassword",
	"ChallengeSent", "InvalidTransport",
}

type metrics struct {
	events       map[string]prometheus.Counter // by type; "other" for the rest
	eventsOther  prometheus.Counter
	attempts     prometheus.Counter
	strikes      prometheus.Counter
	bans         *prometheus.CounterVec // kind, origin
	unbans       prometheus.Counter
	skipped      *prometheus.CounterVec // reason
	skip         map[string]prometheus.Counter
	latency      prometheus.Histogram
	repairs      prometheus.Counter
	fwErrors     prometheus.Counter
	storeErrors  *prometheus.CounterVec // op
	storePending prometheus.GaugeFunc
	active       *prometheus.GaugeVec // kind
}

func newMetrics(reg prometheus.Registerer, pending func() float64) (*metrics, error) {
	const ns, sub = "doorman", "intrusion"
	ev := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_total",
		Help: "Security events seen, by type."}, []string{"type"})
	m := &metrics{
		events:      make(map[string]prometheus.Counter, len(knownTypes)),
		eventsOther: ev.WithLabelValues("other"),
		attempts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "attempts_total",
			Help: "Failed login attempts (events grouped by session and source), trusted sources included."}),
		strikes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "strikes_total",
			Help: "Failed attempts charged against a bannable source."}),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bans_total",
			Help: "Bans applied to this server's firewall, by kind (temporary, permanent) and origin (local, remote, operator)."},
			[]string{"kind", "origin"}),
		unbans: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "unbans_total",
			Help: "Bans lifted before their time (operator or feed)."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "skipped_total",
			Help: "Events and feed bans skipped, by reason."}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "ban_latency_seconds",
			Help:    "From receiving the triggering event to the firewall Add returning.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1}}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "firewall_repairs_total",
			Help: "Times the firewall table or sets were found missing and restored."}),
		fwErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "firewall_errors_total",
			Help: "Failed firewall operations."}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "store_errors_total",
			Help: "Failed store operations, by operation."}, []string{"op"}),
		storePending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "store_pending",
			Help: "Ban decisions waiting to be written to the store."}, pending),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "active_bans",
			Help: "Bans this server enforces, by kind."}, []string{"kind"}),
	}
	for _, t := range knownTypes {
		m.events[t] = ev.WithLabelValues(t)
	}
	m.skip = make(map[string]prometheus.Counter)
	for _, r := range []string{skipIgnored, skipService, skipBadAddress, skipNeverBan, skipRemoteTrust, skipBadBan} {
		m.skip[r] = m.skipped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{ev, m.attempts, m.strikes, m.bans, m.unbans, m.skipped, m.latency,
		m.repairs, m.fwErrors, m.storeErrors, m.storePending, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("intrusion: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) event(typ string) {
	if c, ok := m.events[typ]; ok {
		c.Inc()
		return
	}
	m.eventsOther.Inc()
}
