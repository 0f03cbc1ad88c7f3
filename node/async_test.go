package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// startAsync runs StartAsync and returns a channel of its answers; done must be called
// exactly once, so the channel has room to catch a second call.
func startAsync(s *Session, req command.Request) chan asyncAnswer {
	ch := make(chan asyncAnswer, 2)
	s.StartAsync(context.Background(), &req, false, func(r *command.Reply, err error) { ch <- asyncAnswer{r, err} })
	return ch
}

type asyncAnswer struct {
	r   *command.Reply
	err error
}

func oneAnswer(t *testing.T, ch chan asyncAnswer, within time.Duration) asyncAnswer {
	t.Helper()
	select {
	case a := <-ch:
		select {
		case b := <-ch:
			t.Fatalf("answered twice: %+v then %+v", a, b)
		case <-time.After(50 * time.Millisecond):
		}
		return a
	case <-time.After(within):
		t.Fatalf("no answer within %v", within)
	}
	return asyncAnswer{}
}

// A write at the main started with StartAsync is answered once, from the commit, without a
// goroutine waiting for it; with its quorum gone it is answered by its write timeout with
// a retryable code, still once.
func TestStartAsyncAnswersOnCommitAndOnTimeout(t *testing.T) {
	_, nodes := testCluster(t)
	s := nodes[0].n.NewSession()
	defer s.Close()
	var rid string
	waitUntil(t, 5*time.Second, "create", func() bool {
		a := oneAnswer(t, startAsync(s, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`0`), Server: i64(1)}), 5*time.Second)
		if a.err == nil {
			rid = a.r.Resource.ID
		}
		return a.err == nil
	})
	g := nodes[0].n.localGroup(1)
	a := oneAnswer(t, startAsync(s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`1`)}), 5*time.Second)
	if a.err != nil || a.r.Resource.Version != 2 {
		t.Fatalf("update: %+v %v; want version 2", a.r, a.err)
	}
	if a.r.Seq > g.commitPoint() {
		t.Fatalf("answered at seq %d before it committed (commit %d)", a.r.Seq, g.commitPoint())
	}
	nodes[3].stop()
	nodes[2].stop()
	start := time.Now()
	a = oneAnswer(t, startAsync(s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`2`)}), 5*time.Second)
	if c := command.CodeOf(a.err); c != command.CodeQuorumUnavailable && c != command.CodeTimeout {
		t.Fatalf("write without a quorum: %+v %v; want quorum_unavailable or timeout", a.r, a.err)
	}
	if el := time.Since(start); el < nodes[0].cfg.WriteTimeout/2 {
		t.Fatalf("answered after %v, before the write timeout %v", el, nodes[0].cfg.WriteTimeout)
	}
	g.mu.Lock()
	left := len(g.waiters)
	g.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left after the timeout", left)
	}
}

func (g *group) commitPoint() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.c.Commit()
}
