package node

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
)

// storeView is a copy's committed resources, for comparing copies.
func storeView(t *testing.T, gs store.GroupStore) map[string]uint64 {
	t.Helper()
	live, err := gs.List("", "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := map[string]uint64{}
	for _, r := range live {
		out[r.ID] = r.Version
	}
	return out
}

// A sibling that was away while the main compacted its log past it and vacuumed the
// tombstones of what was deleted meanwhile (docs/replication.md case 12 A and B) comes back
// with its old records. It must not serve them, must be rebuilt from a snapshot rather than
// merged, and must end with exactly the main's resources: no deleted one resurrected, no
// stale version.
func TestCase12AB_CopyBehindHorizonIsRebuiltNotMerged(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	fc, nodes := testClusterWith(t, func(c *Config) {
		c.LogKeep, c.LogKeepMax = 50, 100
		c.VacuumEvery, c.TombstoneRetention, c.DedupeRetention = 50*time.Millisecond, time.Nanosecond, time.Hour
	})
	s := nodes[0].n.NewSession()
	defer s.Close()
	var lastWrite uint64 // seq of the last acknowledged write
	write := func(req command.Request) *command.Reply {
		t.Helper()
		var r *command.Reply
		waitUntil(t, 5*time.Second, req.Op, func() bool {
			var err error
			r, err = do(t, s, req)
			return err == nil || command.CodeOf(err) == command.CodeNotFound
		})
		if r != nil {
			lastWrite = max(lastWrite, r.Seq)
		}
		return r
	}
	var rids []string
	for i := 0; i < 200; i++ {
		r := write(command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`0`), Server: i64(1)})
		rids = append(rids, r.Resource.ID)
	}
	g4 := nodes[3].n.localGroup(1)
	var old map[string]uint64
	waitUntil(t, 5*time.Second, "node 4 holds every create", func() bool {
		old = storeView(t, g4.gs)
		return len(old) == 200
	})

	// Node 4 goes away and is dropped from the group (as a stale copy is).
	nodes[3].stop()
	fc.update(func(d *command.Directory) {
		gi := &d.Groups[0]
		gi.Active = command.Config{Version: 2, Voters: []uint16{2, 3}}
		gi.Siblings = gi.Siblings[:2]
	})
	rng.Shuffle(len(rids), func(i, j int) { rids[i], rids[j] = rids[j], rids[i] })
	deleted := rids[:60]
	for _, rid := range deleted {
		write(command.Request{Op: command.OpDelete, RID: rid})
	}
	for i := 0; i < 1500; i++ {
		write(command.Request{Op: command.OpUpdate, RID: rids[60+rng.IntN(len(rids)-60)], Data: json.RawMessage(fmt.Sprint(i))})
	}
	g1 := nodes[0].n.localGroup(1)
	waitUntil(t, 5*time.Second, "compaction past node 4 and a vacuum of the tombstones", func() bool {
		m, err := g1.gs.Meta()
		if err != nil || m.FirstSeq <= 300 {
			return false
		}
		_, ts, _ := g1.gs.Resource(deleted[0])
		return ts == nil
	})

	// Node 4 returns with its old copy: it serves none of it while it is not in the group.
	nodes[3] = startTestNode(t, nodes[3].cfg)
	g4 = nodes[3].n.localGroup(1)
	if got := storeView(t, g4.gs); !reflect.DeepEqual(got, old) {
		t.Fatal("node 4's copy changed while it was away")
	}
	s4 := nodes[3].n.NewSession()
	defer s4.Close()
	waitUntil(t, 5*time.Second, "node 4 joined", nodes[3].n.Healthy)
	if r, err := do(t, s4, command.Request{Op: command.OpGet, RID: deleted[0], Consistency: command.SiblingRead}); err == nil && r.Resource != nil {
		t.Fatalf("a sibling read on node 4 of deleted %s answered version %d", deleted[0], r.Resource.Version)
	}

	// Registered again as a learner: it is behind the horizon, so it gets a snapshot.
	fc.update(func(d *command.Directory) {
		d.Groups[0].Siblings = append(d.Groups[0].Siblings, command.Member{Node: 4, State: command.SiblingSyncing})
	})
	for i := 0; i < 50; i++ { // writes go on during the transfer
		write(command.Request{Op: command.OpUpdate, RID: rids[60+rng.IntN(len(rids)-60)], Data: json.RawMessage(`"during"`)})
	}
	waitUntil(t, 10*time.Second, "node 4 caught up with the main", func() bool {
		g4.mu.Lock()
		a, resyncing := g4.applied, g4.resyncing
		g4.mu.Unlock()
		g1.mu.Lock()
		c := g1.applied
		g1.mu.Unlock()
		// Acknowledged means committed, not yet applied: both must have applied the last write.
		return !resyncing && a >= lastWrite && c >= lastWrite
	})
	m4, err := g4.gs.Meta()
	if err != nil || m4.FirstSeq <= 300 {
		t.Fatalf("node 4's log starts at %d (%v); it should have been rebuilt from a snapshot", m4.FirstSeq, err)
	}
	want, got := storeView(t, g1.gs), storeView(t, g4.gs)
	if !reflect.DeepEqual(got, want) {
		var zombies []string
		for rid := range got {
			if _, ok := want[rid]; !ok {
				zombies = append(zombies, rid)
			}
		}
		slices.Sort(zombies)
		t.Fatalf("node 4 holds %d resources, the main %d; resurrected: %v", len(got), len(want), zombies)
	}
	for _, rid := range deleted {
		if res, _, _ := g4.gs.Resource(rid); res != nil {
			t.Fatalf("deleted %s is alive on node 4", rid)
		}
	}
}

// Case 12 scenario C: "D wipes its group buckets, loads half a snapshot, and crashes. On
// boot its meta reports an (epoch, seq) and D is counted as voting, although it holds
// nothing it acked." The rule: the resync is recorded first; a copy found resyncing on
// boot holds nothing usable, reports no position, and starts over as a new copy.
func TestCase12C_CrashInTheMiddleOfAResync(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir() + "/sibyl.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src, _ := st.Group(2)
	storeFill(t, src, 1, 100)
	snap, err := src.Snapshot(9)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	gs, _ := st.Group(1)
	storeWrite(t, gs, &store.Batch{Epoch: 3, Append: storeEntries(3, 1, 40), CommitSeq: 40})
	before, _ := gs.Meta()
	if _, err := gs.BeginResync(snap.Header()); err != nil {
		t.Fatal(err)
	}
	recs, _ := snap.Read(nil, 1<<20, 30)
	if err := gs.WriteResync(recs); err != nil {
		t.Fatal(err)
	}
	// "Crash": a node boots on this store.
	n := &Node{cfg: Config{ID: 5}, store: st, log: testLogger(), metrics: newMetrics()}
	g, err := newGroup(n, 1, gs)
	if err != nil {
		t.Fatalf("boot with a copy in the middle of a resync: %v", err)
	}
	r := g.report()
	m, _ := g.gs.Meta()
	switch {
	case m.Resyncing || m.LastSeq != 0 || m.CommitSeq != 0 || m.Applied != 0:
		t.Fatalf("copy after boot: %+v; want empty and not resyncing", m)
	case m.CopyID == before.CopyID || r.CopyID != m.CopyID:
		t.Fatalf("copy ID after boot %q (report %q), before %q: a half-rebuilt copy must not keep its identity", m.CopyID, r.CopyID, before.CopyID)
	case m.Epoch < 3:
		t.Fatalf("epoch after boot %d, below the copy's epoch 3", m.Epoch)
	case r.LastSeq != 0 || r.CommitSeq != 0:
		t.Fatalf("report after boot %+v: a new copy reports no position", r)
	}
	if live, _ := g.gs.List("", "", 0); len(live) != 0 {
		t.Fatalf("%d resources of the half snapshot survived the boot", len(live))
	}
}

// A snapshot transfer cut by a broken connection continues from the copy's durable
// position when the main offers the same snapshot again, instead of starting over.
func TestSnapshotTransferResumesAfterABrokenConnection(t *testing.T) {
	fc, nodes := testClusterWith(t, func(c *Config) {
		c.LogKeep, c.LogKeepMax = 50, 100
		c.SyncRate = 400 << 10 // about 2.5 s for the snapshot below, in 40 KiB chunks
	})
	s := nodes[0].n.NewSession()
	defer s.Close()
	nodes[3].stop()
	fc.update(func(d *command.Directory) {
		gi := &d.Groups[0]
		gi.Active = command.Config{Version: 2, Voters: []uint16{2, 3}}
		gi.Siblings = gi.Siblings[:2]
	})
	payload, _ := json.Marshal(strings.Repeat("p", 700))
	const n = 1200 // past compaction's minimum step of 1,024 entries
	var lastCreate uint64
	for i := 0; i < n; i++ {
		waitUntil(t, 5*time.Second, "create", func() bool {
			r, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: payload, Server: i64(1)})
			if err == nil {
				lastCreate = r.Seq
			}
			return err == nil
		})
	}
	g1 := nodes[0].n.localGroup(1)
	waitUntil(t, 5*time.Second, "compaction", func() bool {
		m, _ := g1.gs.Meta()
		return m.FirstSeq > 1000
	})

	nodes[3] = startTestNode(t, nodes[3].cfg)
	n4 := nodes[3].n
	g4 := n4.localGroup(1)
	fc.update(func(d *command.Directory) {
		d.Groups[0].Siblings = append(d.Groups[0].Siblings, command.Member{Node: 4, State: command.SiblingSyncing})
	})
	waitUntil(t, 10*time.Second, "part of the snapshot on node 4", func() bool {
		live, _ := g4.gs.List("", "", 0)
		return len(live) >= 100
	})
	// Cut every node-to-node connection node 4 accepted, the snapshot's among them.
	n4.connMu.Lock()
	for c := range n4.conns {
		c.Close()
	}
	n4.connMu.Unlock()
	waitUntil(t, 20*time.Second, "node 4 rebuilt", func() bool {
		g4.mu.Lock()
		defer g4.mu.Unlock()
		return !g4.resyncing && !g4.receiving && g4.c.Role() == core.Sibling && g4.applied >= lastCreate
	})
	waitUntil(t, 5*time.Second, "the main applied every create", func() bool {
		g1.mu.Lock()
		defer g1.mu.Unlock()
		return g1.applied >= lastCreate
	})
	want := storeView(t, g1.gs)
	if len(want) != n {
		t.Fatalf("the main holds %d resources, want %d", len(want), n)
	}
	if got := storeView(t, g4.gs); !reflect.DeepEqual(got, want) {
		t.Fatalf("node 4 holds %d resources, the main %d", len(got), len(want))
	}
	resumes := metricValue(t, n4, "sibyl_node_snapshot_resumes_total")
	records := metricValue(t, n4, "sibyl_node_snapshot_received_records_total")
	t.Logf("node 4: %v resumed transfers, %v records received for %d resources", resumes, records, len(want))
	if resumes < 1 || records >= float64(len(want))*3/2 {
		t.Fatalf("after a broken transfer: %v resumes and %v records received for %d resources; want a resume, not a restart",
			resumes, records, len(want))
	}
}

// metricValue returns the value of node n's unlabelled counter or gauge name.
func metricValue(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("node %d has no metric %s", n.cfg.ID, name)
	return 0
}
