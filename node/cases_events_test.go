package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 11 scenario A: "Before fix 3, a sibling emitted an event for (1,101), which was later
// truncated. The subscriber resumes at the new main with token (g,1,101). The new main has
// (2,101) at that seq, checks only the seq, and continues from 102": a hidden gap. Here the
// entry (1,p) really is truncated by a promotion, and a token naming it resumes at the new
// main: the copy checks the epoch of its entry at p, finds 2, and sends a resync of the
// group before continuing, never a silent continuation from p+1.
func TestCase11A_TokenOfATruncatedEntryGetsAResync(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `0`)
	waitUntil(t, 5*time.Second, "siblings hold the create", func() bool {
		return lastSeqOf1(nodes[2]) >= created.Seq && lastSeqOf1(nodes[3]) >= created.Seq
	})
	nodes[2].stop()
	nodes[3].stop()
	if _, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: created.Resource.ID, Data: json.RawMessage(`"lost"`)}); err == nil {
		t.Fatal("an update committed with one of three siblings")
	}
	p := lastSeqOf1(nodes[0])
	waitUntil(t, 5*time.Second, "node 2 holds (1,p)", func() bool { return lastSeqOf1(nodes[1]) >= p })
	nodes[0].stop()
	nodes[2] = startTestNode(t, nodes[2].cfg)
	nodes[3] = startTestNode(t, nodes[3].cfg)
	promote1(fc, 2, 3, []uint16{2, 4}, 1) // node 3 lacks (1,p): its barrier is (2,p)

	c := newCollector(t, nodes[2].n)
	c.subscribe("r", command.Request{Server: i64(1), From: serverToken(1, position{Epoch: 1, Seq: p})})
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	writes := writeLoad(t, 11, 1, "job", 8, s3)
	fs := c.waitSeq("r", 1, writes[len(writes)-1].seq)
	if fs[0].Event != "resync" || !fs[0].Final || fs[0].Server != 1 {
		t.Fatalf("first frame %+v, want one final resync page of group 1 (the token's entry was truncated)", fs[0])
	}
	tok, err := decodeToken(fs[0].Token)
	if err != nil {
		t.Fatal(err)
	}
	if at := tok.posOf(1); at.Epoch < 2 || at.Seq < p {
		t.Fatalf("resync at %v, want a position of the new history at or after seq %d", at, p)
	}
	var after []acked
	for _, w := range writes {
		if w.seq > tok.posOf(1).Seq {
			after = append(after, w)
		}
	}
	checkOneToOne(t, "after the resync", fs[1:], after)
}

// Case 11 scenario D: "A type subscription has seen events only from group 1. Its token
// omits group 2. On resume, group 2 starts 'now', and a matching group-2 event in between is
// lost." The rule: a group absent from a token starts at that group's first entry.
func TestCase11D_TypeTokenWithoutAGroupStartsItAtItsFirstEntry(t *testing.T) {
	_, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	ones := writeLoad(t, 1, 1, "job", 6, s1)
	twos := writeLoad(t, 2, 2, "job", 6, s2) // written "in between": after the token's last group-1 event
	f := filter{kind: filterType, typ: "job"}
	last1 := ones[len(ones)-1]
	tok := encodeToken(token{Kind: filterType, Hash: f.hash(),
		Groups: []groupPos{{Group: 1, Pos: position{Epoch: last1.epoch, Seq: last1.seq}}}})
	from, _ := json.Marshal(tok)
	c := newCollector(t, nodes[2].n) // node 3: a sibling of group 1, no copy of group 2
	c.subscribe("jobs", command.Request{Type: "job", From: from})
	more := writeLoad(t, 3, 1, "job", 3, s1)
	fs := c.waitSeq("jobs", 2, twos[len(twos)-1].seq)
	fs = c.waitSeq("jobs", 1, more[len(more)-1].seq)
	checkOneToOne(t, "group 2, absent from the token", groupEvents(fs, 2), twos)
	checkOneToOne(t, "group 1, right after the token", groupEvents(fs, 1), more)
}
