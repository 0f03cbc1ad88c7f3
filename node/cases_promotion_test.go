package node

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/sibling"
)

// Case 5 scenario B: "The controller seals A and B at e+1. A records the new epoch without
// fsync, replies, crashes, and reboots at epoch e. M ... appends x; A (at epoch e) and C ack.
// x is committed." The rule: the seal is fsynced before the reply, so after the reboot A
// still refuses the old main's appends.
func TestCase5B_SealIsDurableBeforeItsReply(t *testing.T) {
	_, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `"x0"`)
	waitUntil(t, 5*time.Second, "A holds the create", func() bool { return lastSeqOf1(nodes[1]) >= created.Seq })
	reply, status, msg := nodes[1].n.localGroup(1).seal(&command.SealRequest{Server: 1, Epoch: 2, From: 1}, nil)
	if status != http.StatusOK {
		t.Fatalf("seal of A: %d %s", status, msg)
	}
	if reply.LastSeq < created.Seq || reply.CopyID == "" {
		t.Fatalf("seal reply %+v: want A's last durable entry (>= %d) and its copy ID", reply, created.Seq)
	}
	// A crashes right after replying and reboots on its disk.
	nodes[1].stop()
	nodes[1] = startTestNode(t, nodes[1].cfg)
	g := nodes[1].n.localGroup(1)
	m, err := g.gs.Meta()
	if err != nil || m.Epoch != 2 {
		t.Fatalf("A's epoch after the reboot: %d (%v), want the sealed 2", m.Epoch, err)
	}
	waitUntil(t, 5*time.Second, "A follows the directory again", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.c.Role() == core.Sibling
	})
	// The old main's next append (epoch 1) is refused with epoch 2: A cannot help commit x.
	last := lastSeqOf1(nodes[1])
	le := uint64(1)
	acks := g.handleAppends([]*sibling.Append{{Group: 1, Epoch: 1, Main: 1, PrevEpoch: le, PrevSeq: last,
		Entries: []sibling.Entry{{Epoch: 1, Seq: last + 1, Data: []byte(`{}`)}}, CommitSeq: last}})
	if len(acks) != 1 || acks[0].OK || acks[0].Epoch != 2 {
		t.Fatalf("A's answer to the old main after its reboot: %+v, want a refusal with epoch 2", acks)
	}
	if lastSeqOf1(nodes[1]) != last {
		t.Fatal("A stored an entry of the old main after it was sealed")
	}
}

// Case 9 scenario A: "A create with key k is (e,103) in N's tail. The client got timeout. N
// becomes main. The retry of k arrives before the barrier commits ... executes again as
// (e+1,106)": two effects for one key. The rule: a new main indexes the keys of its
// inherited tail before accepting commands; a repeat waits for that entry and never executes
// again. Two retries in flight at once get the same answer.
func TestCase9A_KeyInTheNewMainsTailNeverExecutesTwice(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `0`)
	rid := created.Resource.ID
	waitUntil(t, 5*time.Second, "siblings hold the create", func() bool {
		return lastSeqOf1(nodes[2]) >= created.Seq && lastSeqOf1(nodes[3]) >= created.Seq
	})
	nodes[2].stop()
	nodes[3].stop()
	keyed := command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"once"`), Key: "k"}
	if _, err := do(t, s1, keyed); err == nil {
		t.Fatal("the keyed update committed with one of three siblings")
	}
	tail := lastSeqOf1(nodes[0])
	waitUntil(t, 5*time.Second, "N (node 2) holds the keyed entry", func() bool { return lastSeqOf1(nodes[1]) >= tail })

	// M crashes; N becomes main of epoch 2 with the keyed entry in its uncommitted tail.
	nodes[0].stop()
	nodes[2] = startTestNode(t, nodes[2].cfg)
	nodes[3] = startTestNode(t, nodes[3].cfg)
	promote1(fc, 2, 2, []uint16{3, 4}, 1)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	type answer struct {
		r   *command.Reply
		err error
	}
	var answers []answer
	waitUntil(t, 10*time.Second, "retries answered by the new main", func() bool {
		// Two retries in flight at once, through two nodes.
		a := make(chan answer, 2)
		for _, s := range []*Session{s2, s3} {
			go func(s *Session) {
				req := keyed
				r, err := s.Start(context.Background(), &req, true)()
				a <- answer{r, err}
			}(s)
		}
		answers = []answer{<-a, <-a}
		return answers[0].err == nil && answers[1].err == nil
	})
	for _, a := range answers {
		if !a.r.Duplicate || a.r.Epoch != 1 || a.r.Seq != tail || a.r.Resource.Version != 2 {
			t.Fatalf("retry of k: duplicate %t epoch %d seq %d version %d; want the first result (epoch 1, seq %d, version 2) as a duplicate",
				a.r.Duplicate, a.r.Epoch, a.r.Seq, a.r.Resource.Version, tail)
		}
	}
	got, err := do(t, s2, command.Request{Op: command.OpGet, RID: rid})
	if err != nil || got.Resource.Version != 2 {
		t.Fatalf("resource after the retries: %+v %v, want version 2 (one effect for key k)", got, err)
	}
}

// Case 8 scenario C (and A): what a new main's wait is measured from. The rule: a new main
// re-arms every inherited live ticket from the instant it learned it was chosen, for
// ttl·(1+ρ)+ε, measured on its own monotonic clock; acquires get ticket_held until then. A
// main that inherited the old deadline (or compared stored wall-clock instants) would free
// the ticket up to the time between the grant and the promotion early.
func TestCase8C_NewMainRearmsInheritedTicketsFromItsChoice(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `0`)
	rid := created.Resource.ID
	const ttlMs = 1500
	granted, err := do(t, s1, command.Request{Op: command.OpAcquireTicket, RID: rid, TTLMs: i64(ttlMs)})
	if err != nil || granted.Ticket == nil {
		t.Fatalf("acquire: %+v %v", granted, err)
	}
	waitUntil(t, 5*time.Second, "siblings apply the grant", func() bool {
		return appliedOf1(nodes[1]) >= granted.Seq && appliedOf1(nodes[2]) >= granted.Seq
	})
	// Let a good part of the TTL pass on the old main before it crashes (a condition on
	// time itself, not a synchronisation).
	grantedAt := time.Now()
	waitUntil(t, 5*time.Second, "half the ttl", func() bool { return time.Since(grantedAt) >= ttlMs/2*time.Millisecond })
	nodes[0].stop()
	chosen := time.Now()
	promote1(fc, 2, 2, []uint16{3, 4}, 1)
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	var freed time.Time
	var next *command.Reply
	waitUntil(t, 10*time.Second, "an acquire once the re-armed ticket expired", func() bool {
		r, err := do(t, s2, command.Request{Op: command.OpAcquireTicket, RID: rid, TTLMs: i64(ttlMs)})
		switch {
		case err == nil:
			freed, next = time.Now(), r
			return true
		case command.CodeOf(err) != command.CodeTicketHeld && command.CodeOf(err) != command.CodeNoMain &&
			command.CodeOf(err) != command.CodeTimeout && command.CodeOf(err) != command.CodeUnavailable:
			t.Fatalf("acquire at the new main: %v", err)
		}
		return false
	})
	if held := freed.Sub(chosen); held < ttlMs*time.Millisecond {
		t.Fatalf("the new main granted the ticket again %v after it was chosen, before the full ttl %v", held, ttlMs*time.Millisecond)
	}
	if next.Ticket == nil || next.Ticket.Fence != granted.Ticket.Fence+1 {
		t.Fatalf("next grant %+v, want fence %d", next.Ticket, granted.Ticket.Fence+1)
	}
}

// Case 13 scenario D: "M keeps executing during the hand-over. Its last entries are not on
// the target when the epoch changes, so they are truncated." The rule: M stops assigning
// seqs, waits until the target holds its last seq, committed; the controller commits the new
// epoch; waiting writes go to the target. A write sent during the hand-over therefore takes
// effect in the new epoch, and nothing M wrote is lost.
func TestCase13D_PlannedPromoteLosesNothing(t *testing.T) {
	fc, nodes := casesCluster(t, nil)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `0`)
	rid := created.Resource.ID
	var last *command.Reply
	for i := 1; i <= 5; i++ {
		r, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"before"`)})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	g1 := nodes[0].n.localGroup(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g1.freezeFor(ctx, 2, 2); err != nil {
		t.Fatalf("freeze for the hand-over to node 2: %v", err)
	}
	frozenAt := lastSeqOf1(nodes[0])
	if frozenAt < last.Seq || lastSeqOf1(nodes[1]) < frozenAt {
		t.Fatalf("frozen at %d; target holds %d; want the target to hold everything", frozenAt, lastSeqOf1(nodes[1]))
	}
	w := make(chan *command.Reply, 1)
	go func() {
		r, err := s1.Start(context.Background(), &command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"during"`)}, true)()
		if err != nil {
			t.Errorf("write during the hand-over: %v", err)
		}
		w <- r
	}()
	// The frozen main assigns nothing. (Whether the write reaches it before or after the
	// directory change below, it must take effect in epoch 2.)
	g1.mu.Lock()
	frozen := g1.frozen
	g1.mu.Unlock()
	if s := lastSeqOf1(nodes[0]); s != frozenAt || frozen != 2 {
		t.Fatalf("the frozen main (frozen for %d) assigned seq %d", frozen, s)
	}
	// The controller commits the planned promotion: node 2 is main of epoch 2, node 1 votes.
	promote1(fc, 2, 2, []uint16{1, 3, 4})
	r := <-w
	if r == nil {
		t.FailNow()
	}
	if r.Epoch != 2 || r.Resource.Version != last.Resource.Version+1 {
		t.Fatalf("write during the hand-over: epoch %d version %d, want epoch 2 and version %d", r.Epoch, r.Resource.Version, last.Resource.Version+1)
	}
	// Nothing the old main wrote was truncated: the new main holds every entry up to the
	// freeze point in epoch 1.
	es, err := nodes[1].n.localGroup(1).gs.Entries(1, frozenAt, 1<<20)
	if err != nil || uint64(len(es)) != frozenAt {
		t.Fatalf("new main's log up to %d: %d entries, %v", frozenAt, len(es), err)
	}
	for _, e := range es {
		if e.Epoch != 1 {
			t.Fatalf("new main holds seq %d at epoch %d, want the old main's epoch 1", e.Seq, e.Epoch)
		}
	}
}
