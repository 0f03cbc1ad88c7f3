package scenarios

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestQuorumLossAndReturn: a group with 3 voting siblings; SIGSTOP two of them and writes to
// the group answer quorum_unavailable or timeout within the write timeout and never
// succeed; SIGCONT and they succeed again; SIGSTOP one and they still succeed.
func TestQuorumLossAndReturn(t *testing.T) {
	const writeTimeout = time.Second
	c := StartCluster(t, Options{Nodes: 4, WriteTimeout: writeTimeout})
	sg := c.WaitVoting(1, 3)
	h := NewHistory()
	w := newWriter(t, 0, c.Client(1, 2), 1, h)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if code := w.step(ctx); code != "" {
			t.Fatalf("write before any fault: %s", code)
		}
	}
	var sibs []*Proc
	for _, s := range sg.Siblings {
		sibs = append(sibs, c.Node(int(s.Node)))
	}
	c.Stop(sibs[0])
	c.Stop(sibs[1])
	for i := 0; i < 3; i++ {
		start := time.Now()
		code := w.step(ctx)
		took := time.Since(start)
		if code != command.CodeQuorumUnavailable && code != command.CodeTimeout {
			t.Fatalf("write with 2 of 3 siblings stopped answered %q, want quorum_unavailable or timeout", code)
		}
		if took > writeTimeout+time.Second {
			t.Fatalf("write with 2 of 3 siblings stopped answered after %v (write timeout %v)", took, writeTimeout)
		}
		t.Logf("write %d with two siblings stopped: %s after %v", i, code, took.Round(time.Millisecond))
	}
	c.Cont(sibs[0])
	c.Cont(sibs[1])
	waitFor(t, 10*time.Second, "a write to succeed after SIGCONT", func() bool { return w.step(ctx) == "" })
	c.Stop(sibs[2])
	for i := 0; i < 20; i++ {
		if code := w.step(ctx); code != "" {
			t.Fatalf("write %d with one sibling stopped: %s", i, code)
		}
	}
	c.Cont(sibs[2])
	lost := w.lostWrites(t, c.Client(3))
	if err := h.Check(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("ops %d, acknowledged %d, unknown %d, lost acknowledged writes %d, linearizable: yes",
		h.Len(), w.ok.Load(), w.unknown.Load(), lost)
}

// TestSiblingCrashAndCatchUp: kill -9 a sibling under write load, restart it with its args;
// it catches up and holds every acknowledged write.
func TestSiblingCrashAndCatchUp(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4})
	sg := c.WaitVoting(1, 3)
	victim := c.Node(int(sg.Siblings[0].Node))
	h := NewHistory()
	ctx, cancel := context.WithCancel(context.Background())
	var ws []*writer
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		ws = append(ws, newWriter(t, i, c.Client(1+i%4, 1), 1, h))
	}
	for _, w := range ws {
		go func(w *writer) { w.run(ctx); done <- struct{}{} }(w)
	}
	progress := func(n int64) func() bool {
		return func() bool {
			var sum int64
			for _, w := range ws {
				sum += w.ok.Load()
			}
			return sum >= n
		}
	}
	waitFor(t, 20*time.Second, "100 writes", progress(100))
	c.Kill(victim)
	waitFor(t, 20*time.Second, "300 writes with a sibling down", progress(300))
	c.Restart(victim)
	waitFor(t, 20*time.Second, "500 writes after the restart", progress(500))
	cancel()
	for range ws {
		<-done
	}
	// The restarted copy must hold every acknowledged write: a sibling read on it with the
	// client's floor waits until it has caught up.
	id, _ := strconv.Atoi(victim.Name())
	rc := c.Client(id)
	lost := 0
	for _, w := range ws {
		rid, want, _, _ := w.state()
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		var got uint64
		for rctx.Err() == nil {
			r, err := rc.Do(rctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
			if err == nil && r.Resource.Version >= want {
				got = r.Resource.Version
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		rcancel()
		if got < want {
			t.Errorf("restarted sibling %s: %s at version %d, want >= %d", victim.Name(), rid, got, want)
			lost++
		}
		lost += w.lostWrites(t, c.Client(2))
	}
	if err := h.Check(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	var acked, unknown int64
	for _, w := range ws {
		acked += w.ok.Load()
		unknown += w.unknown.Load()
	}
	t.Logf("ops %d, acknowledged %d, unknown %d, lost acknowledged writes %d, linearizable: yes", h.Len(), acked, unknown, lost)
}

// TestControllerLeaderCrash: kill -9 of the controllers' raft leader; a new leader is
// elected and nodes keep serving writes throughout.
func TestControllerLeaderCrash(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4})
	c.WaitVoting(1, 3)
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	for _, ctl := range st.Controllers {
		if ctl.Leader {
			leader = ctl.ID
		}
	}
	if leader == "" {
		t.Fatal("status names no controller leader")
	}
	h := NewHistory()
	ctx, cancel := context.WithCancel(context.Background())
	var ws []*writer
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		ws = append(ws, newWriter(t, i, c.Client(1+i%4), command.ServerID(1+i%4), h))
	}
	for _, w := range ws {
		go func(w *writer) { w.run(ctx); done <- struct{}{} }(w)
	}
	old := c.Controller(leader)
	c.Kill(old)
	start := time.Now()
	var newLeader string
	waitFor(t, 15*time.Second, "a new controller leader", func() bool {
		st, err := c.Status()
		if err != nil {
			return false
		}
		for _, ctl := range st.Controllers {
			if ctl.Leader && ctl.ID != leader {
				newLeader = ctl.ID
				return true
			}
		}
		return false
	})
	t.Logf("controller %s killed; %s leads after %v", leader, newLeader, time.Since(start).Round(time.Millisecond))
	before := int64(0)
	for _, w := range ws {
		before += w.ok.Load()
	}
	waitFor(t, 10*time.Second, "writes after the leader change", func() bool {
		var sum int64
		for _, w := range ws {
			sum += w.ok.Load()
		}
		return sum >= before+200
	})
	c.Restart(old)
	cancel()
	for range ws {
		<-done
	}
	var failed, lost int64
	for _, w := range ws {
		if f := w.failures(); f != "" {
			t.Logf("writer %d (%s): failures%s", w.id, w.cl.Addr(), f)
		}
		failed += w.failed.Load() + w.unknown.Load()
		lost += int64(w.lostWrites(t, c.Client(1)))
	}
	if failed > 0 {
		t.Errorf("%d writes failed while the controller leader changed; nodes must keep serving", failed)
	}
	if err := h.Check(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("ops %d, failed %d, lost acknowledged writes %d, linearizable: yes", h.Len(), failed, lost)
}
