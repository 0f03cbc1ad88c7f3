package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 14 (c): "Node X forwards pipelined w1 to M. M is fenced, and the forward fails. X
// forwards w2 to N, then retries w1 internally on N. Now w1 comes after w2." The rule: a
// node never retries a forwarded write itself; on a change of main the writes in flight
// fail (outcome unknown) and later ones are forwarded after that. So w1 either is in the
// new main's tail, ahead of w2, or never takes effect.
func TestCase14C_ForwardedWriteIsNeverRetriedByTheForwarder(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"v1"`)
	rid := created.Resource.ID
	waitUntil(t, 5*time.Second, "siblings hold the create", func() bool {
		return lastSeqOf1(nodes[1]) >= created.Seq && lastSeqOf1(nodes[3]) >= created.Seq
	})
	// X is node 3. Nodes 2 and 4 are down, so w1 stays pending at M (node 1) and on X.
	nodes[1].stop()
	nodes[3].stop()
	x := nodes[2].n.NewSession()
	defer x.Close()
	w1 := pendingWrite(x, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"w1"`)})
	waitUntil(t, 5*time.Second, "w1 executed at M", func() bool { return lastSeqOf1(nodes[0]) > created.Seq })
	// M dies: the forward of w1 fails with a retryable code (outcome unknown).
	nodes[0].stop()
	err := <-w1
	if err == nil || !command.CodeOf(err).Retryable() {
		t.Fatalf("w1 after its main died: %v, want a retryable error (outcome unknown)", err)
	}
	// N (node 2, which lacks w1) becomes main; X forwards w2 there.
	nodes[1] = startTestNode(t, nodes[1].cfg)
	nodes[3] = startTestNode(t, nodes[3].cfg)
	promote1(fc, 2, 2, []uint16{3, 4}, 1)
	var w2 *command.Reply
	waitUntil(t, 10*time.Second, "w2 through X", func() bool {
		r, err := do(t, x, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"w2"`)})
		w2 = r
		return err == nil
	})
	// A linearizable read through X sees w2 as the last change of r.
	last, err := do(t, x, command.Request{Op: command.OpGet, RID: rid})
	if err != nil {
		t.Fatal(err)
	}
	if w2.Resource.Version != 2 || last.Resource.Version != 2 || string(last.Resource.Data) != `"w2"` {
		t.Fatalf("after w2: version %d data %s (w2 had version %d); want w2 last and w1 never applied after it",
			last.Resource.Version, last.Resource.Data, w2.Resource.Version)
	}
	// No entry of the new main's log carries w1 after w2.
	es, err := nodes[1].n.localGroup(1).gs.Entries(w2.Seq+1, ^uint64(0)>>1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		eff, err := command.DecodeEffect(e.Data)
		if err == nil && eff.Resource != nil && string(eff.Resource.Data) == `"w1"` {
			t.Fatalf("w1 was executed again at seq %d, after w2 at %d", e.Seq, w2.Seq)
		}
	}
}
