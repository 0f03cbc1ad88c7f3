package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// serverToken is a server-1 token at pos (what a client would hold).
func serverToken(g command.ServerID, pos position) json.RawMessage {
	f := filter{kind: filterServer, group: g}
	b, _ := json.Marshal(encodeToken(token{Kind: filterServer, Hash: f.hash(), Groups: []groupPos{{Group: g, Pos: pos}}}))
	return b
}

// A token ahead of a copy's commit point waits there (docs/replication.md case 11 C): node 4
// restarts behind the main, takes a token of the main's latest event, and delivers exactly
// the events after it once it has caught up, neither a resync nor its own position.
func TestCase11C_TokenAheadOfTheCopyWaits(t *testing.T) {
	_, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	writeLoad(t, 1, 1, "job", 20, s1)
	nodes[3].stop()
	behind := writeLoad(t, 2, 1, "job", 40, s1) // committed by nodes 1, 2 and 3
	at := position{Epoch: behind[len(behind)-1].epoch, Seq: behind[len(behind)-1].seq}
	nodes[3] = startTestNode(t, nodes[3].cfg)
	waitUntil(t, 10*time.Second, "node 4 joined", nodes[3].n.Healthy)
	c := newCollector(t, nodes[3].n)
	c.subscribe("ahead", command.Request{Server: i64(1), From: serverToken(1, at)})
	more := writeLoad(t, 3, 1, "job", 20, s1)
	fs := c.waitSeq("ahead", 1, more[len(more)-1].seq)
	checkOneToOne(t, "token ahead of the copy", fs, more)
}

// A copy that stops being a holder hands its subscriptions to a holder's feed, continuing
// from the last position it delivered.
func TestEventsCopyStopsServing(t *testing.T) {
	fc, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	c := newCollector(t, nodes[3].n) // node 4: a sibling of group 1
	c.subscribe("all", command.Request{Server: i64(1)})
	first := writeLoad(t, 1, 1, "job", 30, s1)
	c.waitSeq("all", 1, first[len(first)-1].seq)
	fc.update(func(d *command.Directory) {
		g := &d.Groups[0]
		g.Siblings = g.Siblings[:2] // nodes 2 and 3
		g.Active = command.Config{Version: 2, Voters: []uint16{2, 3}}
	})
	h := nodes[3].n.subs.hubFor(1)
	waitUntil(t, 10*time.Second, "node 4's hub of group 1 on a feed", func() bool { return h.modeNow() == hubUpstream })
	second := writeLoad(t, 2, 1, "job", 30, s1)
	all := append(first, second...)
	fs := c.waitSeq("all", 1, all[len(all)-1].seq)
	checkOneToOne(t, "across the switch to a feed", fs, all)
}

// A resync where the node holds no copy: the holder's feed says it cannot continue from
// the token (another epoch at its seq), and the set comes from the holder's snapshot.
func TestEventsResyncThroughFeed(t *testing.T) {
	_, nodes := testCluster(t)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	writes := writeLoad(t, 1, 2, "job", 20, s2)
	c := newCollector(t, nodes[0].n) // node 1 holds no copy of group 2
	c.subscribe("r", command.Request{Server: i64(2), From: serverToken(2, position{Epoch: 9, Seq: writes[5].seq})})
	more := writeLoad(t, 2, 2, "job", 10, s2)
	all := append(writes, more...)
	fs := c.waitSeq("r", 2, all[len(all)-1].seq)
	if fs[0].Event != "resync" || !fs[0].Final || fs[0].Server != 2 {
		t.Fatalf("first frame %+v, want one final resync page of group 2", fs[0])
	}
	tok, err := decodeToken(fs[0].Token)
	if err != nil {
		t.Fatal(err)
	}
	var after []acked
	for _, w := range all {
		if w.seq > tok.posOf(2).Seq {
			after = append(after, w)
		}
	}
	checkOneToOne(t, "after a resync through a feed", fs[1:], after)
}

// Catching up is flow-controlled: a subscription that starts far behind and whose
// consumer does not read fills its buffer and waits, and is never lagged for it.
func TestEventsCatchUpNeverLags(t *testing.T) {
	_, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	writes := writeLoad(t, 1, 1, "job", subBuffer+300, s1)
	wake := make(wakeChan, 1)
	s := nodes[1].n.NewEventSession(wake)
	defer s.Close()
	req := command.Request{Op: command.OpSubscribe, Sub: "old", Server: i64(1), From: serverToken(1, position{})}
	if _, err := s.Start(t.Context(), &req, false)(); err != nil {
		t.Fatal(err)
	}
	s.Subscribed("old")
	sub := s.events().get("old")
	waitUntil(t, 10*time.Second, "a full buffer", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.queue) >= subBuffer
	})
	if sub.isEnded() {
		t.Fatal("a catch-up with a full buffer was lagged")
	}
	var got []frame
	waitUntil(t, 10*time.Second, "every event", func() bool {
		got = append(got, decodeFrames(t, s.Events(nil, 256))...)
		return len(got) >= len(writes)
	})
	checkOneToOne(t, "catch-up past a full buffer", got, writes)
}
