package api

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics holds the API's measurements and writes them in the Prometheus text format
// (version 0.0.4). It renders itself rather than being a client_golang collector: the
// label sets are small and fixed (ops and codes of the protocol), so a map per family is
// enough, and a process that also has a Prometheus registry (cmd/sibyl's node) writes
// both on one /metrics. One Metrics may be shared by several servers (they then add up).
type Metrics struct {
	mu       sync.Mutex
	requests map[opCode]uint64
	latency  map[string]*histogram
	open     atomic.Int64
	events   atomic.Uint64
	revoked  atomic.Uint64
}

type opCode struct{ op, code string }

// latencyBuckets are upper bounds in seconds, doubling from 50 µs (a local read) to past
// 5 s (a write that waits out the default write timeout): the same as the node's
// histograms (node.LatencyBuckets).
var latencyBuckets = func() []float64 {
	b := make([]float64, 18)
	for i := range b {
		b[i] = 50e-6 * float64(uint64(1)<<i)
	}
	return b
}()

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
}

// NewMetrics returns an empty set of API metrics.
func NewMetrics() *Metrics {
	return &Metrics{requests: map[opCode]uint64{}, latency: map[string]*histogram{}}
}

// observe records one answered request. op must come from a bounded set (see opLabel).
func (m *Metrics) observe(op, code string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[opCode{op, code}]++
	h := m.latency[op]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latency[op] = h
	}
	s := d.Seconds()
	for i, le := range latencyBuckets {
		if s <= le {
			h.counts[i]++
			break
		}
	}
	h.sum += s
	h.count++
}

func (m *Metrics) connOpened()      { m.open.Add(1) }
func (m *Metrics) eventsSent(n int) { m.events.Add(uint64(n)) }
func (m *Metrics) connClosed()      { m.open.Add(-1) }
func (m *Metrics) revokedClose()    { m.revoked.Add(1) }

// opLabel keeps the op label bounded: a client can send any string as op.
func opLabel(op string) string {
	if knownOps[op] {
		return op
	}
	return "invalid"
}

// Handler serves the metrics for GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		m.write(bw)
		bw.Flush()
	})
}

// write renders every family in a stable order.
func (m *Metrics) write(w *bufio.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()

	fmt.Fprintln(w, "# HELP sibyl_requests_total Requests answered by the API, by op and result code (ok on success).")
	fmt.Fprintln(w, "# TYPE sibyl_requests_total counter")
	keys := make([]opCode, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].op != keys[j].op {
			return keys[i].op < keys[j].op
		}
		return keys[i].code < keys[j].code
	})
	for _, k := range keys {
		fmt.Fprintf(w, "sibyl_requests_total{op=%q,code=%q} %d\n", k.op, k.code, m.requests[k])
	}

	fmt.Fprintln(w, "# HELP sibyl_request_seconds Time from receiving a request to having its reply ready, by op.")
	fmt.Fprintln(w, "# TYPE sibyl_request_seconds histogram")
	ops := make([]string, 0, len(m.latency))
	for op := range m.latency {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		h := m.latency[op]
		var cumulative uint64
		for i, le := range latencyBuckets {
			cumulative += h.counts[i]
			fmt.Fprintf(w, "sibyl_request_seconds_bucket{op=%q,le=%q} %d\n",
				op, strconv.FormatFloat(le, 'g', -1, 64), cumulative)
		}
		fmt.Fprintf(w, "sibyl_request_seconds_bucket{op=%q,le=\"+Inf\"} %d\n", op, h.count)
		fmt.Fprintf(w, "sibyl_request_seconds_sum{op=%q} %s\n", op, strconv.FormatFloat(h.sum, 'g', -1, 64))
		fmt.Fprintf(w, "sibyl_request_seconds_count{op=%q} %d\n", op, h.count)
	}

	fmt.Fprintln(w, "# HELP sibyl_connections WebSocket connections currently open.")
	fmt.Fprintln(w, "# TYPE sibyl_connections gauge")
	fmt.Fprintf(w, "sibyl_connections %d\n", m.open.Load())

	fmt.Fprintln(w, "# HELP sibyl_event_frames_total Event frames (events, resync, lagged) sent to WebSocket clients.")
	fmt.Fprintln(w, "# TYPE sibyl_event_frames_total counter")
	fmt.Fprintf(w, "sibyl_event_frames_total %d\n", m.events.Load())

	fmt.Fprintln(w, "# HELP sibyl_connections_revoked_total WebSocket connections closed because their token was revoked or expired.")
	fmt.Fprintln(w, "# TYPE sibyl_connections_revoked_total counter")
	fmt.Fprintf(w, "sibyl_connections_revoked_total %d\n", m.revoked.Load())
}
