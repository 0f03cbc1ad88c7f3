package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// Case 4 scenario A: "M appends (1,101): r becomes v7. Sibling A stores and applies it. Its
// ack is lost. A client on A reads r (sibling) and gets v7. M crashes. The controller
// chooses B, which lacks (1,101). B commits (2,101) ... A truncates (1,101) from its log, but
// resources still holds v7, and (2,101) applies on top of it." With apply on commit, A's
// sibling read never shows the uncommitted v7, and after the truncation A's state equals the
// new main's.
func TestCase4A_SiblingNeverAppliesUncommittedEffects(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"v1"`)
	rid := created.Resource.ID
	waitUntil(t, 5*time.Second, "every sibling applied the create", func() bool {
		return appliedOf1(nodes[1]) >= created.Seq && appliedOf1(nodes[2]) >= created.Seq && appliedOf1(nodes[3]) >= created.Seq
	})
	// Only A (node 2) can still ack: the update is stored on M and A but cannot commit.
	nodes[2].stop()
	nodes[3].stop()
	if _, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v7"`)}); err == nil {
		t.Fatal("an update committed with one of three siblings")
	}
	pending := lastSeqOf1(nodes[0])
	waitUntil(t, 5*time.Second, "A stores the pending entry", func() bool { return lastSeqOf1(nodes[1]) >= pending })
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	got, err := do(t, s2, command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
	if err != nil {
		t.Fatalf("sibling read on A: %v", err)
	}
	if got.Resource.Version != 1 || string(got.Resource.Data) != `"v1"` || got.Seq >= pending {
		t.Fatalf("sibling read on A: version %d data %s at seq %d; want v1, below the pending seq %d", got.Resource.Version, got.Resource.Data, got.Seq, pending)
	}
	if a := appliedOf1(nodes[1]); a >= pending {
		t.Fatalf("A applied seq %d, an entry that never committed", a)
	}

	// M crashes; B (node 3), which lacks the entry, becomes main of epoch 2 with A and C.
	nodes[0].stop()
	nodes[2] = startTestNode(t, nodes[2].cfg)
	nodes[3] = startTestNode(t, nodes[3].cfg)
	promote1(fc, 2, 3, []uint16{2, 4}, 1)
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	var up *command.Reply
	waitUntil(t, 10*time.Second, "an update by the new main", func() bool {
		r, err := do(t, s3, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v7prime"`)})
		up = r
		return err == nil
	})
	if up.Epoch != 2 || up.Resource.Version != 2 {
		t.Fatalf("new main's update: epoch %d version %d, want epoch 2 version 2 (the pending v7 never happened)", up.Epoch, up.Resource.Version)
	}
	waitUntil(t, 5*time.Second, "A applied the new main's update", func() bool { return appliedOf1(nodes[1]) >= up.Seq })
	// The main answers a write once it commits, and applies it just after.
	waitUntil(t, 5*time.Second, "the new main applied its update", func() bool { return appliedOf1(nodes[2]) >= up.Seq })
	// A truncated (1,pending) and holds the new main's entry there; its committed layer is
	// the new main's, not v7 with (2,...) on top.
	ga := nodes[1].n.localGroup(1)
	es, err := ga.gs.Entries(pending, pending, 1<<20)
	if err != nil || len(es) != 1 || es[0].Epoch != 2 {
		t.Fatalf("A's entry at the formerly pending seq %d: %+v %v, want one of epoch 2", pending, es, err)
	}
	ra, _, err := ga.gs.Resource(rid)
	if err != nil || ra == nil {
		t.Fatalf("A's resource: %v", err)
	}
	rb, _, _ := nodes[2].n.localGroup(1).gs.Resource(rid)
	if ra.Version != rb.Version || string(ra.Data) != string(rb.Data) || ra.Version != 2 {
		t.Fatalf("A holds version %d %s, the new main version %d %s: the copies diverged", ra.Version, ra.Data, rb.Version, rb.Data)
	}
}

// Case 4 scenario B: "M executes (1,101) (r becomes v7) and sends it. It has no acks yet. A
// get (linearizable) arrives. The quorum round succeeds, because nobody is sealed yet. The
// read returns v7." Here the siblings hold and ack the entry, and the read round is
// confirmed, but the main's own fsync of the entry is held, so it is not committed: the read
// must answer from the committed layer, v1.
func TestCase4B_LinearizableReadNeverSeesAPendingValue(t *testing.T) {
	gate := &gatedStore{Store: store.NewMemStore()}
	_, nodes := casesCluster(t, map[uint16]store.Store{1: gate})
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"v1"`)
	rid := created.Resource.ID
	waitUntil(t, 5*time.Second, "the main applied the create", func() bool { return appliedOf1(nodes[0]) >= created.Seq })

	gate.close()
	defer gate.open()
	w := pendingWrite(s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v7"`)})
	waitUntil(t, 5*time.Second, "the update executed at the main", func() bool { return lastSeqOf1(nodes[0]) > created.Seq })
	pending := lastSeqOf1(nodes[0])
	waitUntil(t, 5*time.Second, "siblings hold the pending entry", func() bool {
		return lastSeqOf1(nodes[1]) >= pending && lastSeqOf1(nodes[2]) >= pending
	})
	got, err := do(t, s1, command.Request{Op: command.OpGet, RID: rid})
	if err != nil {
		t.Fatalf("linearizable read while the update is pending: %v", err)
	}
	if got.Resource.Version != 1 || string(got.Resource.Data) != `"v1"` || got.Seq >= pending {
		t.Fatalf("linearizable read returned version %d %s at seq %d while seq %d is pending: a value never committed", got.Resource.Version, got.Resource.Data, got.Seq, pending)
	}
	gate.open()
	// The write's outcome may be a timeout (its deadline ran while held); the state is
	// committed once the main fsyncs, and then reads see it.
	<-w
	waitUntil(t, 5*time.Second, "the update commits once fsynced", func() bool {
		r, err := do(t, s1, command.Request{Op: command.OpGet, RID: rid})
		return err == nil && r.Resource.Version == 2 && r.Seq >= pending
	})
}
