package finder

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "doorman"
	subsystem = "finder"
)

type trackerMetrics struct {
	events        *prometheus.CounterVec
	resyncs       *prometheus.CounterVec
	resyncSeconds prometheus.Histogram
	heartbeats    *prometheus.CounterVec
	storeErrors   prometheus.Counter
	local         prometheus.Gauge
}

func newTrackerMetrics(reg prometheus.Registerer) (*trackerMetrics, error) {
	m := &trackerMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "contact_events_total", Help: "AMI ContactStatus events by status."}, []string{"status"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "resyncs_total", Help: "Full contact resyncs (PJSIPShowContacts) by result."}, []string{"result"}),
		resyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "resync_duration_seconds", Help: "Time to read all contacts and write them to the store.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "heartbeats_total", Help: "Heartbeats by result (ok, ami_down, store_error)."}, []string{"result"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "store_write_errors_total", Help: "Failed writes of registrations to the store."}),
		local: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "local_contacts", Help: "Contacts registered on this server, as last seen."}),
	}
	return m, register(reg, m.events, m.resyncs, m.resyncSeconds, m.heartbeats, m.storeErrors, m.local)
}

type agiMetrics struct {
	sessions *prometheus.CounterVec
	byStatus map[string]prometheus.Counter // sessions' children, resolved once
	seconds  prometheus.Histogram
	active   prometheus.Gauge
	rejected prometheus.Counter
	refresh  *prometheus.CounterVec
	indexed  prometheus.GaugeFunc
}

// newAGIMetrics builds the AGI server's metrics; indexed reads the index's
// size when scraped.
func newAGIMetrics(reg prometheus.Registerer, indexed func() float64) (*agiMetrics, error) {
	m := &agiMetrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "agi_sessions_total", Help: "FastAGI dialLocal sessions by dialStatus (or hangup)."}, []string{"status"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "agi_session_duration_seconds", Help: "FastAGI session time, accept to close.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "agi_active_sessions", Help: "FastAGI sessions in progress."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "agi_rejected_total", Help: "Connections closed at once because max_sessions were in progress."}),
		refresh: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "index_refreshes_total", Help: "Full loads of the in-memory registration index (start, feed gaps, index_refresh) by result."}, []string{"result"}),
		indexed: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "index_registrations", Help: "Registrations in the in-memory index."}, indexed),
	}
	m.byStatus = map[string]prometheus.Counter{}
	for _, st := range []string{StatusLocal, StatusRemote, StatusFound, StatusNotFound, StatusUnknownAccount,
		StatusInvalid, StatusError, statusHangup} {
		m.byStatus[st] = m.sessions.WithLabelValues(st)
	}
	return m, register(reg, m.sessions, m.seconds, m.active, m.rejected, m.refresh, m.indexed)
}

// session is the sessions counter of status, without a label lookup per
// session.
func (m *agiMetrics) session(status string) prometheus.Counter {
	if c, ok := m.byStatus[status]; ok {
		return c
	}
	return m.sessions.WithLabelValues(status)
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("finder: register metrics: %w", err)
	}
	return nil
}
