package node

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg     *prometheus.Registry
	commits prometheus.Counter
	fsync   prometheus.Histogram
	batch   prometheus.Histogram
	// snapshotBytes counts bytes of snapshots this node sent as main.
	snapshotBytes prometheus.Counter
	compacted     prometheus.Counter
	// vacuumed is the tombstone bound of the last vacuum entry a main wrote, by group.
	vacuumed *prometheus.GaugeVec
	// snapshotRecords counts snapshot records this node installed as a sibling;
	// snapshotResumes the transfers that continued one cut short.
	snapshotRecords prometheus.Counter
	snapshotResumes prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_committed_entries_total",
			Help: "Log entries committed by groups this node is main of."}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sibyl_node_log_write_seconds",
			Help: "Duration of one durable log write (one fsync).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sibyl_node_log_write_entries",
			Help: "Entries appended per durable log write (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_sent_bytes_total",
			Help: "Bytes of snapshots sent to siblings that were behind the log's horizon."}),
		compacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_log_compacted_entries_total",
			Help: "Log entries removed by compaction."}),
	}
	m.vacuumed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sibyl_node_vacuum_tombstones_through",
		Help: "Seq at or below which the last vacuum entry this node wrote as main drops tombstones."}, []string{"group"})
	m.snapshotRecords = prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_received_records_total",
		Help: "store.Snapshot records this node wrote while its copy was rebuilt."})
	m.snapshotResumes = prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_resumes_total",
		Help: "store.Snapshot transfers that continued from the position an earlier, broken one reached."})
	m.reg.MustRegister(m.commits, m.fsync, m.batch, m.snapshotBytes, m.compacted, m.vacuumed,
		m.snapshotRecords, m.snapshotResumes, prometheus.NewGoCollector())
	return m
}

// Registry returns the registry the node's metrics live in (the API server adds its own).
func (n *Node) Registry() *prometheus.Registry { return n.metrics.reg }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
