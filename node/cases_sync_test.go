package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Named tests for what a copy that joins a group (registration) receives: docs/replication.md
// cases 4 C and 9 B. Group 2 of casesCluster has main 2 and no siblings to start with.

// Case 4 scenario C: "registerSibling snapshots resources at N=105 while the commit point is
// 100. M is then fenced and the new main truncates 101..105. The learner holds the effects
// of 101..105 with no log entries left to truncate." The rule: a copy takes state only from
// committed entries. A learner added while the main has an uncommitted tail stores that tail
// but does not apply it, never counts towards committing it, and after the truncation its
// state is the new main's.
func TestCase4C_LearnerTakesOnlyCommittedState(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	setGroup(fc, 2, 1, 2, []uint16{1}) // group 2: main 2, voter 1 (W=1)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	var created *command.Reply
	waitUntil(t, 10*time.Second, "a create in group 2", func() bool {
		r, err := do(t, s2, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`"v1"`), Server: i64(2)})
		created = r
		return err == nil
	})
	rid := created.Resource.ID
	waitUntil(t, 5*time.Second, "the voter applied the create", func() bool { return appliedOf(nodes[0], 2) >= created.Seq })
	nodes[0].stop() // the only voter: group 2's writes stay pending
	if _, err := do(t, s2, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v7"`)}); err == nil {
		t.Fatal("an update committed without its voter")
	}
	pending := lastSeqOf(nodes[1], 2)
	setGroup(fc, 2, 1, 2, []uint16{1}, 3) // registerSibling(3): a learner
	waitUntil(t, 10*time.Second, "the learner stores the main's log", func() bool { return lastSeqOf(nodes[2], 2) >= pending })
	g3 := nodes[2].n.localGroup(2)
	if a := appliedOf(nodes[2], 2); a >= pending {
		t.Fatalf("the learner applied seq %d; the main's commit point is below %d", a, pending)
	}
	if res, _, err := g3.gs.Resource(rid); err != nil || res == nil || res.Version != 1 {
		t.Fatalf("learner's committed state of r: %+v %v, want v1", res, err)
	}
	g2 := nodes[1].n.localGroup(2)
	g2.mu.Lock()
	commit := g2.c.Commit()
	g2.mu.Unlock()
	if commit >= pending {
		t.Fatalf("the main committed seq %d with only a learner acking", pending)
	}

	// The main is fenced; node 1 (back, without the pending entry) becomes main of epoch 2
	// and truncates it; the learner follows and equals the new main.
	nodes[1].stop()
	nodes[0] = startTestNode(t, nodes[0].cfg)
	setGroup(fc, 2, 2, 1, nil, 3)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	var up *command.Reply
	waitUntil(t, 10*time.Second, "an update by the new main", func() bool {
		r, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"v2"`)})
		up = r
		return err == nil
	})
	waitUntil(t, 5*time.Second, "the learner applied it", func() bool { return appliedOf(nodes[2], 2) >= up.Seq })
	res, _, err := g3.gs.Resource(rid)
	if err != nil || res == nil || res.Version != 2 || string(res.Data) != `"v2"` || up.Resource.Version != 2 {
		t.Fatalf("learner holds %+v (%v), new main wrote version %d: want both at version 2 with \"v2\"", res, err, up.Resource.Version)
	}
}

// Case 9 scenario B: "D syncs from a snapshot of resources only. Later D is chosen ... A
// retry of k within 10 minutes executes twice." The rule: the dedupe record is part of the
// entry's effect and travels to every copy with it; a copy that joined after the keyed write
// and is then chosen answers the retry from the key.
func TestCase9B_KeysTravelToACopyThatJoinsLater(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	keyed := command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`"once"`), Server: i64(2), Key: "k"}
	var first *command.Reply
	waitUntil(t, 10*time.Second, "the keyed create in group 2", func() bool {
		r, err := do(t, s2, keyed)
		first = r
		return err == nil
	})
	// D (node 3) registers after the write, catches up and votes.
	setGroup(fc, 2, 1, 2, nil, 3)
	waitUntil(t, 10*time.Second, "D caught up", func() bool { return lastSeqOf(nodes[2], 2) >= first.Seq })
	setGroup(fc, 2, 1, 2, []uint16{3})
	waitUntil(t, 10*time.Second, "D applied the keyed write", func() bool { return appliedOf(nodes[2], 2) >= first.Seq })
	rec, err := nodes[2].n.localGroup(2).gs.Dedupe("k")
	if err != nil || rec == nil || rec.Seq != first.Seq || rec.Resource == nil || rec.Resource.ID != first.Resource.ID {
		t.Fatalf("D's dedupe record of k: %+v %v, want the first result (seq %d, %s)", rec, err, first.Seq, first.Resource.ID)
	}
	// D is chosen; the retry of k is answered from the key, not executed again.
	nodes[1].stop()
	setGroup(fc, 2, 2, 3, nil)
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	var retry *command.Reply
	waitUntil(t, 10*time.Second, "the retry at D", func() bool {
		r, err := do(t, s3, keyed)
		retry = r
		return err == nil
	})
	if !retry.Duplicate || retry.Seq != first.Seq || retry.Epoch != first.Epoch || retry.Resource.ID != first.Resource.ID {
		t.Fatalf("retry at the new main: %+v, want the first result (%s at (%d,%d)) as a duplicate", retry, first.Resource.ID, first.Epoch, first.Seq)
	}
	l, err := do(t, s3, command.Request{Op: command.OpList, Server: i64(2)})
	if err != nil || len(l.Resources) != 1 {
		t.Fatalf("group 2 after the retry: %+v %v, want one resource", l, err)
	}
}
