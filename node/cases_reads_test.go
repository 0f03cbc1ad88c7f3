package node

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/sibylhq/sibyl/command"
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
