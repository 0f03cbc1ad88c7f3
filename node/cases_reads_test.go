package node

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// Case 10 scenario E: "The Go client reconnects to another node, and the same regression
// [a sibling read going backwards] happens across the reconnect." A client passes the highest
// seq it saw as minSeq; a copy below it waits for it (or the main answers), never answering
// from below. Here minSeq is two entries ahead of every copy when the read arrives; the
// answer comes only once the writes that reach it commit.
func TestCase10E_MinSeqAboveTheCopyIsNeverAnsweredFromBelow(t *testing.T) {
	_, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"v1"`)
	rid := created.Resource.ID
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	minSeq := lastSeqOf1(nodes[0]) + 2
	wait := s3.Start(context.Background(), &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead, MinSeq: minSeq}, false)
	var last *command.Reply
	for range 2 {
		r, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v"`)})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	got, err := wait()
	if err != nil {
		t.Fatalf("sibling get with minSeq %d: %v", minSeq, err)
	}
	if got.Seq < minSeq || got.Resource.Version != last.Resource.Version {
		t.Fatalf("sibling get with minSeq %d answered version %d at seq %d; want version %d at seq >= %d",
			minSeq, got.Resource.Version, got.Seq, last.Resource.Version, minSeq)
	}
}

// commitLossStore drops, while armed, every batch that only moves the commit point (no
// epoch, truncation or entries): the batches a crash may lose because they are still in
// flight (store.Batch). A copy on it holds every entry it acked but, after a restart,
// knows only the commit point of its last synced batch.
type commitLossStore struct {
	store.Store
	armed atomic.Bool
}

func (s *commitLossStore) Group(g command.ServerID) (store.GroupStore, error) {
	gs, err := s.Store.Group(g)
	if err != nil {
		return nil, err
	}
	return &commitLossGroup{GroupStore: gs, s: s}, nil
}

type commitLossGroup struct {
	store.GroupStore
	s *commitLossStore
}

func (g *commitLossGroup) Write(b *store.Batch) error {
	if g.s.armed.Load() && b.Epoch == 0 && b.Truncate == 0 && len(b.Append) == 0 {
		return nil
	}
	return g.GroupStore.Write(b)
}

// Case 10 scenario D: "A connection on X (no copy) reads r through copy A (commit 120) and
// gets v5; A dies; the next read goes to B (commit 110) and gets v4: backwards on one
// connection." Here X is node 4, which holds no copy of group 1 (its sibling reads go to
// a copy in its location or to the main), A is main 1 and B is node 2, which holds v5's entry (its ack committed it) but
// crashed before a batch carrying the commit point reached its disk. B becomes main while its
// barrier cannot commit (C, its only voter, is down): the connection's floor keeps B from
// answering v4, and once the barrier commits B answers v5.
func TestCase10D_ASiblingReadNeverGoesBackOnOneConnection(t *testing.T) {
	mem := store.NewMemStore()
	lossy := &commitLossStore{Store: mem}
	fc, nodes := casesCluster(t, map[uint16]store.Store{2: lossy})
	setGroup(fc, 1, 1, 1, []uint16{2, 3}) // X (node 4) holds no copy; v5 commits only with B's ack
	x := nodes[3]
	waitUntil(t, 5*time.Second, "X stops serving its copy of group 1", func() bool {
		g := x.n.localGroup(1)
		return g == nil || !g.serving()
	})
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"v1"`)
	rid := created.Resource.ID
	var v4 *command.Reply
	for _, v := range []string{`"v2"`, `"v3"`, `"v4"`} {
		r, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(v)})
		if err != nil {
			t.Fatal(err)
		}
		v4 = r
	}
	waitUntil(t, 5*time.Second, "B applied v4", func() bool { return appliedOf1(nodes[1]) >= v4.Seq })

	lossy.armed.Store(true)
	v5, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v5"`)})
	if err != nil {
		t.Fatal(err)
	}
	sx := x.n.NewSession()
	defer sx.Close()
	sibRead := command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead}
	// X sends a sibling read to a copy in its own location when one exists, and C (node 3)
	// may not hold v5 yet: the first read names v5's seq, so whichever copy answers it
	// answers v5, and the connection's floor becomes v5's seq.
	first := sibRead
	first.MinSeq = v5.Seq
	got, err := do(t, sx, first)
	if err != nil || got.Resource.Version != v5.Resource.Version || got.Seq < v5.Seq {
		t.Fatalf("sibling read on X with minSeq %d: %+v, %v; want version %d at seq >= %d", v5.Seq, got, err, v5.Resource.Version, v5.Seq)
	}
	floor := got.Seq

	// A dies; B crashes and restarts on its disk; C is down, so B's barrier cannot commit.
	nodes[0].stop()
	nodes[1].stop()
	nodes[2].stop()
	promote1(fc, 2, 2, []uint16{3})
	cfg := nodes[1].cfg
	cfg.Store = store.ReopenMemStore(mem)
	nodes[1] = startTestNode(t, cfg)
	b := nodes[1]
	waitUntil(t, 10*time.Second, "B serves as main of epoch 2 and X routes to it", func() bool {
		g := b.n.localGroup(1)
		gi := x.n.directoryGroup(1)
		return g != nil && g.isMain() && gi != nil && gi.Epoch == 2 && gi.Main == 2
	})
	if last, applied := lastSeqOf1(b), appliedOf1(b); last < v5.Seq || applied >= floor {
		t.Fatalf("setup: B holds up to seq %d and applied %d; want v5's seq %d held and applied below the floor %d", last, applied, v5.Seq, floor)
	}
	got, err = do(t, sx, sibRead)
	if err == nil {
		t.Fatalf("sibling read on X through B, below the connection's floor %d: version %d %s at seq %d; want no answer until B reaches the floor",
			floor, got.Resource.Version, got.Resource.Data, got.Seq)
	}
	if applied := appliedOf1(b); applied >= floor {
		t.Fatalf("B applied %d during the read: the read did not wait below the floor %d", applied, floor)
	}
	t.Logf("read below the floor: %v", err)

	nodes[2] = startTestNode(t, nodes[2].cfg)
	waitUntil(t, 10*time.Second, "B's barrier commits and B reaches the floor", func() bool { return appliedOf1(b) >= floor })
	got, err = do(t, sx, sibRead)
	if err != nil || got.Resource.Version != v5.Resource.Version || got.Seq < floor {
		t.Fatalf("sibling read on X through B after its barrier: %+v, %v; want version %d at seq >= %d", got, err, v5.Resource.Version, floor)
	}
}
