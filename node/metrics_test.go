package node

import (
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// The node's metric families of docs/protocol.md §8 are present and move with the work:
// commit latency and fsyncs with writes, replication lag per sibling at the main (and
// growing when a sibling stops), subscribers with a subscription.
func TestNodeMetricsMoveWithTheWork(t *testing.T) {
	_, nodes := testCluster(t)
	n1 := nodes[0].n
	s := n1.NewSession()
	defer s.Close()
	writeLoad(t, 1, 1, "job", 20, s)
	for _, h := range []string{"sibyl_commit_seconds", "sibyl_fsync_seconds", "sibyl_fsync_batch_entries"} {
		if c := histogramCount(t, n1, h); c == 0 {
			t.Errorf("%s has no observations after 20 writes", h)
		}
	}
	if c := histogramCount(t, nodes[1].n, "sibyl_fsync_seconds"); c == 0 {
		t.Error("a sibling's sibyl_fsync_seconds has no observations")
	}
	// The gauge says how the log writes: directly wherever the test's disk allows it.
	direct := n1.store.(store.Durable).WALStats().Direct
	if v := metricValue(t, n1, "sibyl_store_log_direct_writes"); v != map[bool]float64{true: 1}[direct] {
		t.Errorf("sibyl_store_log_direct_writes %v with the log writing directly: %t", v, direct)
	}
	// A majority acknowledges a write, so node 4 may still be behind when the writes are
	// answered; with every node up its lag reaches 0.
	waitUntil(t, 5*time.Second, "node 4's lag to reach 0 with every node up", func() bool { return lagOf(t, n1, "1", "4") == 0 })
	nodes[3].stop()
	writeLoad(t, 2, 1, "job", 10, s)
	if lag := lagOf(t, n1, "1", "4"); lag < 10 {
		t.Fatalf("lag of a stopped sibling is %v after 10 more writes, want at least 10", lag)
	}
	if v := metricValue(t, n1, "sibyl_subscribers"); v != 0 {
		t.Fatalf("sibyl_subscribers %v before any subscription", v)
	}
	c := newCollector(t, n1)
	c.subscribe("all", command.Request{Server: i64(1)})
	waitUntil(t, 5*time.Second, "one subscriber", func() bool { return metricValue(t, n1, "sibyl_subscribers") == 1 })
}

func histogramCount(t *testing.T, n *Node, name string) uint64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("node %d has no metric %s", n.cfg.ID, name)
	return 0
}

func lagOf(t *testing.T, n *Node, server, node string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sibyl_replication_lag_entries" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["server"] == server && labels["node"] == node {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("node %d reports no replication lag for group %s, node %s", n.cfg.ID, server, node)
	return 0
}
