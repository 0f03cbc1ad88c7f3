package node

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sibylhq/sibyl/node/store"
)

// LatencyBuckets are the upper bounds, in seconds, of Sibyl's latency histograms: doubling
// from 50 µs to past 5 s.
var LatencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 18)

type metrics struct {
	reg     *prometheus.Registry
	commits prometheus.Counter
	// commitSeconds: at a main, from an entry's seq being assigned to its commit.
	commitSeconds prometheus.Histogram
	fsync         prometheus.Histogram
	batch         prometheus.Histogram
	// snapshotBytes counts bytes of snapshots this node sent as main; snapshotsSent the
	// snapshots it opened for siblings.
	snapshotBytes prometheus.Counter
	snapshotsSent prometheus.Counter
	// registerAborts counts registrations this node gave up as main, by the bound passed.
	registerAborts *prometheus.CounterVec
	compacted      prometheus.Counter
	// vacuumed is the tombstone bound of the last vacuum entry a main wrote, by group.
	vacuumed *prometheus.GaugeVec
	// snapshotRecords counts snapshot records this node installed as a sibling;
	// snapshotResumes the transfers that continued one cut short.
	snapshotRecords prometheus.Counter
	snapshotResumes prometheus.Counter
	// diskFaults counts the times the store's disk failed; diskDegraded is 1 while it does.
	diskFaults   prometheus.Counter
	diskDegraded prometheus.Gauge
	// Replication traffic: messages (one socket write each) and the frames in them, of
	// appends (heartbeats included) a main sent and acks a sibling sent.
	appendMessages, appendFrames prometheus.Counter
	ackMessages, ackFrames       prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_committed_entries_total",
			Help: "Log entries committed by groups this node is main of."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sibyl_commit_seconds",
			Help:    "At a main: time from an entry's seq being assigned to its commit (durable on the main and a quorum of siblings).",
			Buckets: LatencyBuckets}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sibyl_fsync_seconds",
			Help:    "Duration of one durable write of a group's batch (the log's write and fsync, shared by the batches of a group commit).",
			Buckets: LatencyBuckets}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sibyl_fsync_batch_entries",
			Help: "Entries a main appends per durable write (its batch in the group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_sent_bytes_total",
			Help: "Bytes of snapshots sent to siblings that were behind the log's horizon."}),
		snapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshots_sent_total",
			Help: "Snapshots opened to rebuild siblings that were behind the log's horizon (a resumed transfer counts once)."}),
		registerAborts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sibyl_node_register_aborts_total",
			Help: "Registrations a main gave up because keeping the log for the copy passed a bound."}, []string{"bound"}),
		compacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_log_compacted_entries_total",
			Help: "Log entries removed by compaction."}),
	}
	m.vacuumed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sibyl_node_vacuum_tombstones_through",
		Help: "Seq at or below which the last vacuum entry this node wrote as main drops tombstones."}, []string{"group"})
	m.snapshotRecords = prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_received_records_total",
		Help: "store.Snapshot records this node wrote while its copy was rebuilt."})
	m.snapshotResumes = prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_snapshot_resumes_total",
		Help: "store.Snapshot transfers that continued from the position an earlier, broken one reached."})
	m.diskFaults = prometheus.NewCounter(prometheus.CounterOpts{Name: "sibyl_node_disk_faults_total",
		Help: "Times the node's store could not write or fsync (disk full, I/O error) and the node became degraded."})
	m.diskDegraded = prometheus.NewGauge(prometheus.GaugeOpts{Name: "sibyl_node_disk_degraded",
		Help: "1 while the node's store cannot write or fsync: the node serves no group and retries its disk."})
	m.reg.MustRegister(m.diskFaults, m.diskDegraded)
	repl := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sibyl_replication_messages_total",
		Help: "Replication messages sent (one socket write each): append messages by mains, ack messages by siblings."}, []string{"kind"})
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sibyl_replication_frames_total",
		Help: "Frames in the replication messages sent: Append frames (heartbeats included) by mains, Ack frames by siblings."}, []string{"kind"})
	m.appendMessages, m.appendFrames = repl.WithLabelValues("append"), frames.WithLabelValues("append")
	m.ackMessages, m.ackFrames = repl.WithLabelValues("ack"), frames.WithLabelValues("ack")
	m.reg.MustRegister(repl, frames)
	m.reg.MustRegister(m.commits, m.commitSeconds, m.fsync, m.batch, m.snapshotBytes, m.snapshotsSent, m.registerAborts, m.compacted, m.vacuumed,
		m.snapshotRecords, m.snapshotResumes, prometheus.NewGoCollector())
	return m
}

// stateCollector reports, at each scrape, what the node's groups and subscriptions are
// now: the replication lag of each sibling of the groups this node is main of, and the
// open subscriptions.
type stateCollector struct {
	n   *Node
	lag *prometheus.Desc
	sub *prometheus.Desc
	// the durable store's flushes, and the log entries they wrote to bbolt or dropped
	// unwritten (node/store/layer_carry.go)
	flushes, flushEntries *prometheus.Desc
	// log records the node's last boot replayed, whole or for their log entries only
	bootReplayed *prometheus.Desc
	// 1 while the write-ahead log writes directly (node/wal/direct.go), 0 buffered
	logDirect *prometheus.Desc
	// writes of the write-ahead log that waited for more records (node/wal/gather.go)
	logGatherWaits *prometheus.Desc
}

func newStateCollector(n *Node) *stateCollector {
	return &stateCollector{n: n,
		lag: prometheus.NewDesc("sibyl_replication_lag_entries",
			"At a main: entries of its log a sibling does not hold yet (the main's last seq minus the sibling's match).",
			[]string{"server", "node"}, nil),
		sub: prometheus.NewDesc("sibyl_subscribers", "Subscriptions open on this node's client connections.", nil, nil),
		flushes: prometheus.NewDesc("sibyl_store_flushes_total",
			"Flushes of the write-ahead log's changes into the state store (bbolt).", nil, nil),
		flushEntries: prometheus.NewDesc("sibyl_store_flush_log_entries_total",
			"Log entries flushes wrote to the state store (fate=written), or kept in memory and dropped unwritten because compaction or a truncation removed them first (fate=dropped).",
			[]string{"fate"}, nil),
		bootReplayed: prometheus.NewDesc("sibyl_store_boot_replayed_records",
			"Write-ahead log records the node's last start replayed over the state store: whole (part=whole), or only for the log entries a flush had kept in memory (part=log).",
			[]string{"part"}, nil),
		logDirect: prometheus.NewDesc("sibyl_store_log_direct_writes",
			"1 while the write-ahead log makes records durable with direct, synchronous writes; 0 while it writes through the page cache and fdatasyncs (a filesystem without direct I/O).",
			nil, nil),
		logGatherWaits: prometheus.NewDesc("sibyl_store_log_gather_waits_total",
			"Durable writes of the write-ahead log that waited a moment for more records before starting, because other appenders were active (several records in the write before).",
			nil, nil)}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.sub
	ch <- c.flushes
	ch <- c.flushEntries
	ch <- c.bootReplayed
	ch <- c.logDirect
	ch <- c.logGatherWaits
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.n.mu.RLock()
	groups := make([]*group, 0, len(c.n.groups))
	for _, g := range c.n.groups {
		groups = append(groups, g)
	}
	c.n.mu.RUnlock()
	for _, g := range groups {
		g.mu.Lock()
		if m := g.c.Replication(); m != nil {
			last := m.LastSeq()
			server := strconv.Itoa(int(g.id))
			for id, p := range m.Peers() {
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(last-min(p.Match, last)),
					server, strconv.Itoa(int(id)))
			}
		}
		g.mu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(c.sub, prometheus.GaugeValue, float64(c.n.subs.count()))
	if d, ok := c.n.store.(store.Durable); ok {
		fs := d.FlushStats()
		ch <- prometheus.MustNewConstMetric(c.flushes, prometheus.CounterValue, float64(fs.Flushes))
		ch <- prometheus.MustNewConstMetric(c.flushEntries, prometheus.CounterValue, float64(fs.LogEntriesWritten), "written")
		ch <- prometheus.MustNewConstMetric(c.flushEntries, prometheus.CounterValue, float64(fs.LogEntriesDropped), "dropped")
		r := d.Replayed()
		ch <- prometheus.MustNewConstMetric(c.bootReplayed, prometheus.GaugeValue, float64(r.Applied), "whole")
		ch <- prometheus.MustNewConstMetric(c.bootReplayed, prometheus.GaugeValue, float64(r.LogOnly), "log")
		st := d.WALStats()
		ch <- prometheus.MustNewConstMetric(c.logGatherWaits, prometheus.CounterValue, float64(st.GatherWaits))
		direct := 0.0
		if st.Direct {
			direct = 1
		}
		ch <- prometheus.MustNewConstMetric(c.logDirect, prometheus.GaugeValue, direct)
	}
}

// Registry returns the registry the node's metrics live in (the API server adds its own).
func (n *Node) Registry() *prometheus.Registry { return n.metrics.reg }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
