// Package metrics holds LiveShare's Prometheus metrics. cmd/api creates one
// registry and one *Metrics over it and hands the *Metrics to the packages
// that observe something; nothing here registers with the global default
// registry.
//
// Every method is safe on a nil *Metrics (it does nothing), so that code
// built without metrics, such as unit tests, needs no stub.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "liveshare"

// Outcomes of a snapshot attempt.
const (
	SnapshotStored    = "stored"
	SnapshotUnchanged = "unchanged"
	SnapshotTooLarge  = "too_large"
	SnapshotFailed    = "failed"
)

// Reasons a subscriber is cut off as slow.
const (
	SlowQueueFull    = "queue_full"    // its queue of events filled up
	SlowWriteTimeout = "write_timeout" // a write to it did not finish in time
)

// Metrics are the service's metrics, registered on one registry.
type Metrics struct {
	gatherer prometheus.Gatherer
	reg      prometheus.Registerer

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	// requestSeries caches the series of each (route, method, status)
	// answered, so that recording a request neither formats the status nor
	// hashes the labels: a requestKey maps to a *requestSeries.
	requestSeries sync.Map

	opsCommitted   prometheus.Counter
	batchSize      prometheus.Histogram
	commitDuration prometheus.Histogram
	roomLoad       prometheus.Histogram

	sseSubscribers prometheus.Gauge
	sseEvents      *prometheus.CounterVec
	sseSlow        *prometheus.CounterVec
	sseDelay       prometheus.Histogram

	snapshots      *prometheus.CounterVec
	snapshotReject *prometheus.CounterVec
	snapshotEncode prometheus.Histogram
	snapshotSize   prometheus.Histogram
}

// New creates the metrics and registers them on reg, which also serves
// them (Handler). It panics if one is registered twice, as
// prometheus.MustRegister does: that is a programming error.
func New(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		gatherer: reg,
		reg:      reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and method (for event streams: how long the stream lasted).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
		opsCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "room", Name: "ops_committed_total",
			Help: "Ops committed through this instance.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "room", Name: "commit_batch_ops",
			Help:    "Ops per committed write.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "room", Name: "commit_duration_seconds",
			Help:    "Time to commit one write to the database (successful commits).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		roomLoad: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "room", Name: "load_duration_seconds",
			Help:    "Time to load a room into memory: its newest snapshot and the ops after it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		sseSubscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "sse", Name: "subscribers",
			Help: "Event streams open now.",
		}),
		sseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "sse", Name: "events_sent_total",
			Help: "Events handed to event streams' writers, by event name (pings not counted).",
		}, []string{"event"}),
		sseSlow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "sse", Name: "slow_subscribers_total",
			Help: "Subscribers cut off as too slow: their queue filled up (queue_full) or a write did not finish in time (write_timeout).",
		}, []string{"reason"}),
		sseDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "sse", Name: "commit_to_write_seconds",
			Help:    "Delay from an op's commit to the flush of the live event carrying it on a stream (merged events: from the oldest commit).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "attempts_total",
			Help: "Snapshot attempts, by trigger and outcome (stored, unchanged, too_large, failed).",
		}, []string{"trigger", "outcome"}),
		snapshotReject: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "rejected_total",
			Help: "Stored snapshots passed over when read, by reason: corrupt (does not decode or verify) or unsealable (a sealed snapshot that does not open).",
		}, []string{"reason"}),
		snapshotEncode: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "encode_duration_seconds",
			Help:    "Time to sort and encode a room's state into a snapshot.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		snapshotSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "size_bytes",
			Help:    "Size of encoded snapshots.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10), // 256 B … 64 MiB
		}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.opsCommitted, m.batchSize, m.commitDuration,
		m.roomLoad, m.sseSubscribers, m.sseEvents, m.sseSlow, m.sseDelay, m.snapshots,
		m.snapshotReject, m.snapshotEncode, m.snapshotSize)
	return m
}

// Handler serves the registry's metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	}
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{Registry: m.reg})
}

// Rooms is what the room gauges read at each scrape; *room.Manager
// satisfies it.
type Rooms interface {
	// Len is how many rooms are in memory.
	Len() int
	// SnapshotLag is, over the rooms in memory, the most ops any room has
	// after its newest snapshot, and the longest any room has had a change
	// that no snapshot holds.
	SnapshotLag() (versions int64, behind time.Duration)
}

// WatchRooms registers the gauges read from rooms at each scrape: live
// rooms and the snapshot lag of the worst room.
func (m *Metrics) WatchRooms(rooms Rooms) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "room", Name: "live",
			Help: "Rooms in memory now.",
		}, func() float64 { return float64(rooms.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "lag_versions",
			Help: "Ops after the newest snapshot, in the room in memory that has the most.",
		}, func() float64 { v, _ := rooms.SnapshotLag(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "snapshot", Name: "lag_seconds",
			Help: "Age of the oldest change no snapshot holds, over the rooms in memory (0 when every room is snapshotted).",
		}, func() float64 { _, d := rooms.SnapshotLag(); return d.Seconds() }),
	)
}

type requestKey struct {
	route, method string
	status        int
}

type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// Request records one answered HTTP request. route is the chi route
// pattern, never the raw path.
func (m *Metrics) Request(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := requestKey{route, method, status}
	v, ok := m.requestSeries.Load(k)
	if !ok {
		// The cache holds what the vectors hold: one entry per series.
		v, _ = m.requestSeries.LoadOrStore(k, &requestSeries{
			count:    m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)),
			duration: m.httpDuration.WithLabelValues(route, method),
		})
	}
	s := v.(*requestSeries)
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

// Committed records one committed write of n ops that took d to commit.
func (m *Metrics) Committed(n int, d time.Duration) {
	if m == nil {
		return
	}
	m.opsCommitted.Add(float64(n))
	m.batchSize.Observe(float64(n))
	m.commitDuration.Observe(d.Seconds())
}

// RoomLoaded records the time one room took to load.
func (m *Metrics) RoomLoaded(d time.Duration) {
	if m == nil {
		return
	}
	m.roomLoad.Observe(d.Seconds())
}

// StreamOpened and StreamClosed track the open event streams.
func (m *Metrics) StreamOpened() {
	if m != nil {
		m.sseSubscribers.Inc()
	}
}

// StreamClosed is the counterpart of StreamOpened.
func (m *Metrics) StreamClosed() {
	if m != nil {
		m.sseSubscribers.Dec()
	}
}

// EventSent records one event handed to a stream's writer.
func (m *Metrics) EventSent(event string) {
	if m != nil {
		m.sseEvents.WithLabelValues(event).Inc()
	}
}

// SlowSubscriber records one subscriber cut off as too slow.
func (m *Metrics) SlowSubscriber(reason string) {
	if m != nil {
		m.sseSlow.WithLabelValues(reason).Inc()
	}
}

// CommitToWrite records the delay from a commit to the write of its event.
func (m *Metrics) CommitToWrite(d time.Duration) {
	if m != nil {
		m.sseDelay.Observe(d.Seconds())
	}
}

// Reasons a stored snapshot is rejected when read.
const (
	SnapshotCorrupt    = "corrupt"
	SnapshotUnsealable = "unsealable"
)

// SnapshotRejected records a stored snapshot passed over as unusable.
func (m *Metrics) SnapshotRejected(reason string) {
	if m != nil {
		m.snapshotReject.WithLabelValues(reason).Inc()
	}
}

// Snapshot records one snapshot attempt. encode and size are observed when
// the state was encoded (size > 0).
func (m *Metrics) Snapshot(trigger, outcome string, encode time.Duration, size int) {
	if m == nil {
		return
	}
	m.snapshots.WithLabelValues(trigger, outcome).Inc()
	if size > 0 {
		m.snapshotEncode.Observe(encode.Seconds())
		m.snapshotSize.Observe(float64(size))
	}
}
