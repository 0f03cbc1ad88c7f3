package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
)

// faultyCluster is testCluster with node id's store failing where its wal.Faults say.
func faultyCluster(t *testing.T, id command.ServerID) (*fakeController, []*testNode, *wal.Faults) {
	t.Helper()
	f := &wal.Faults{}
	fc, nodes := testClusterWith(t, func(c *Config) {
		if c.ID != id {
			return
		}
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := store.OpenDurable(c.DataDir, store.DurableOptions{HealEvery: 20 * time.Millisecond, WAL: wal.Options{Faults: f}})
		if err != nil {
			t.Fatal(err)
		}
		c.Store = s
	})
	return fc, nodes, f
}

// diskWriter creates resources in group 1 through s until stopped, recording what was
// acknowledged and every refusal.
type diskWriter struct {
	mu     sync.Mutex
	acked  []string // RIDs
	errs   map[command.Code]int
	failed int
	stop   chan struct{}
	done   chan struct{}
}

func startDiskWriter(s *Session) *diskWriter {
	w := &diskWriter{errs: map[command.Code]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			req := command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Server: i64(1)}
			r, err := s.Start(context.Background(), &req, true)()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, r.Resource.ID)
			} else {
				w.failed++
				w.errs[command.CodeOf(err)]++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *diskWriter) counts() (acked, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked), w.failed
}

func (w *diskWriter) finish() ([]string, map[command.Code]int) {
	close(w.stop)
	<-w.done
	return w.acked, w.errs
}

func (f *fakeController) degraded(node uint16) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reports[node].Degraded
}

// A main whose disk fails acknowledges nothing more, its group's writes answer retryable
// codes, it reports itself degraded; once replaced (the controller's promotion, done here
// by hand) the group writes again, and when the disk heals the old main comes back by
// itself as a sibling and catches up. Every acknowledged write is in the final state.
func TestMainDiskFaultRefusesThenHeals(t *testing.T) {
	fc, nodes, f := faultyCluster(t, 1)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	createIn1(t, s2, `{"warm":1}`)
	w := startDiskWriter(s2)
	waitUntil(t, 5*time.Second, "writes acknowledged", func() bool { a, _ := w.counts(); return a >= 20 })

	f.Set(wal.FaultSync, wal.ErrIO)
	waitUntil(t, 5*time.Second, "node 1 reports degraded", func() bool {
		return fc.degraded(1) != "" && !nodes[0].n.Healthy()
	})
	ackedAtFault, failedAtFault := w.counts()
	waitUntil(t, 10*time.Second, "writes refused while the main's disk fails", func() bool {
		_, failed := w.counts()
		return failed >= failedAtFault+5
	})
	if a, _ := w.counts(); a != ackedAtFault {
		t.Fatalf("%d writes acknowledged while the main's disk failed", a-ackedAtFault)
	}
	t.Logf("degraded: %q", fc.degraded(1))

	promote1(fc, 2, 2, []uint16{3, 4}, 1)
	waitUntil(t, 10*time.Second, "writes acknowledged by the new main", func() bool {
		a, _ := w.counts()
		return a >= ackedAtFault+20
	})
	f.Heal()
	waitUntil(t, 10*time.Second, "node 1 healthy and no longer degraded", func() bool {
		return nodes[0].n.Healthy() && fc.degraded(1) == ""
	})
	waitUntil(t, 10*time.Second, "node 1 catches up as a sibling", func() bool {
		return lastSeqOf1(nodes[0]) > 0 && lastSeqOf1(nodes[0]) == lastSeqOf1(nodes[1])
	})
	acked, errs := w.finish()
	for code, k := range errs {
		if !code.Retryable() {
			t.Fatalf("%d writes answered %s, which is not retryable (all: %v)", k, code, errs)
		}
	}
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	for _, rid := range acked {
		if _, err := do(t, s3, command.Request{Op: command.OpGet, RID: rid, Server: i64(1)}); err != nil {
			t.Fatalf("acknowledged write %s lost: %v", rid, err)
		}
	}
	waitUntil(t, 10*time.Second, "node 1 applied everything", func() bool { return appliedOf1(nodes[0]) == appliedOf1(nodes[1]) })
	g1 := nodes[0].n.localGroup(1)
	for _, rid := range acked {
		if r, _, err := g1.gs.Resource(rid); err != nil || r == nil {
			t.Fatalf("node 1's healed copy lacks acknowledged %s: %v", rid, err)
		}
	}
	t.Logf("%d writes acknowledged, refusals %v, %d injected fsync failures", len(acked), errs, f.Hits(wal.FaultSync))
}

// A sibling whose disk fails stops acknowledging; the group keeps its quorum with the
// other siblings, and the sibling catches up by itself once its disk heals. The main never
// counts the failing sibling past what its store holds.
func TestSiblingDiskFaultKeepsTheQuorum(t *testing.T) {
	fc, nodes, f := faultyCluster(t, 2)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	createIn1(t, s1, `{"warm":1}`)
	w := startDiskWriter(s1)
	waitUntil(t, 5*time.Second, "writes acknowledged", func() bool { a, _ := w.counts(); return a >= 20 })
	f.Set(wal.FaultWrite, wal.ErrNoSpace)
	waitUntil(t, 5*time.Second, "node 2 reports degraded", func() bool { return fc.degraded(2) != "" })
	ackedAtFault, _ := w.counts()
	waitUntil(t, 10*time.Second, "writes acknowledged without node 2", func() bool {
		a, _ := w.counts()
		return a >= ackedAtFault+50
	})
	m2, err := nodes[1].n.localGroup(1).gs.Meta()
	if err != nil {
		t.Fatal(err)
	}
	g1 := nodes[0].n.localGroup(1)
	g1.mu.Lock()
	match := g1.c.Replication().Peers()[2].Match
	g1.mu.Unlock()
	if match > m2.LastSeq {
		t.Fatalf("the main counts node 2 up to seq %d; its store holds up to %d", match, m2.LastSeq)
	}
	if main := lastSeqOf1(nodes[0]); m2.LastSeq >= main {
		t.Fatalf("node 2's store holds seq %d with its disk failing; the main is at %d", m2.LastSeq, main)
	}
	f.Heal()
	waitUntil(t, 10*time.Second, "node 2 healthy", func() bool { return nodes[1].n.Healthy() && fc.degraded(2) == "" })
	waitUntil(t, 10*time.Second, "node 2 catches up", func() bool {
		return lastSeqOf1(nodes[1]) >= lastSeqOf1(nodes[0])-1 && lastSeqOf1(nodes[1]) > m2.LastSeq
	})
	acked, errs := w.finish()
	if len(errs) > 0 {
		t.Logf("refusals during the sibling's fault: %v", errs)
	}
	t.Logf("%d writes acknowledged; node 2 held seq %d while degraded, the main reached %d", len(acked), m2.LastSeq, lastSeqOf1(nodes[0]))
}
