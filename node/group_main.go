package node

import (
	"context"
	"runtime"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// startMain sets up what the driver keeps for the main role the core started: the
// pending layer over the store (the uncommitted tail is pending state: execution must see
// it), the persist and vacuum loops, the inherited tickets. Call with g.mu held.
func (g *group) startMain(rc core.RoleChange) error {
	chosenAt := time.Now() // inherited tickets are re-armed from here (tickets.go)
	m := g.roleMeta
	g.tail = rc.Disk.Log.(*tailLog)
	g.ov = NewOverlay(g.gs)
	g.effects = map[uint64]*command.Effect{}
	g.unpersisted, g.frozen = nil, 0
	g.links = map[uint16]*peerLink{}
	g.snapshots = map[uint16]*snapshotTransfer{}
	g.holds, g.logBytes, g.byteMarks = map[uint16]*learnerHold{}, 0, []byteMark{{seq: m.LastSeq}}
	g.vacuumed, g.marks = command.Vacuum{}, []seqMark{{seq: m.LastSeq, at: time.Now()}}
	g.droppable = m.LastSeq // whatever it inherited may hold tombstones and keys
	g.kickPersist = make(chan struct{}, 1)
	g.stopMain = make(chan struct{})
	g.tickets = nil
	if m.LastSeq > m.Applied {
		es, err := g.gs.Entries(m.Applied+1, m.LastSeq, 1<<30)
		if err != nil {
			return err
		}
		for _, e := range es {
			eff, err := command.DecodeEffect(e.Data)
			if err != nil {
				return err
			}
			g.effects[e.Seq] = &eff
			g.ov.Add(e.Seq, &eff)
		}
	}
	liveTickets, err := g.ov.LiveTickets()
	if err != nil {
		return err
	}
	g.armInheritedTickets(liveTickets, chosenAt)
	go g.persistLoop(g.stopMain, g.kickPersist)
	go g.vacuumLoop(g.stopMain)
	go g.expiryLoop(g.stopMain)
	g.log.Info().Uint64("epoch", rc.Epoch).Uint64("lastSeq", m.LastSeq).Uint64("commit", m.CommitSeq).
		Bool("barrier", rc.Barrier).Msg("serving as main")
	return nil
}

// endMain tears down the main role the core ended: pending writes fail at once with a
// retryable code (their outcome is unknown) and the pending layer is dropped. Call with
// g.mu held.
func (g *group) endMain(reason *command.Error) {
	if reason == nil {
		reason = command.Errorf(command.CodeNoMain, "group %d: this node stopped serving as main", g.id)
	}
	g.log.Info().Str("why", reason.Message).Msg("no longer main")
	if g.stopMain != nil {
		close(g.stopMain)
		g.stopMain = nil
	}
	g.stopTicketTimers()
	g.closeSnapshots()
	for _, l := range g.links {
		l.close()
	}
	g.links = nil
	g.failWaiters(reason)
	g.ov, g.effects, g.unpersisted, g.frozen, g.assignedAt = nil, nil, nil, 0, nil
}

// kick wakes the persister and every sibling link. Call with g.mu held.
func (g *group) kick() {
	select {
	case g.kickPersist <- struct{}{}:
	default:
	}
	for _, l := range g.links {
		l.wake()
	}
}

// persistLoop makes the main's new entries durable and applies committed ones, many per
// fsync (group commit), until stop is closed.
func (g *group) persistLoop(stop chan struct{}, kick chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-kick:
		}
		g.mu.Lock()
		if g.c.Role() != core.Main || g.stopMain != stop {
			g.mu.Unlock()
			return
		}
		b := &store.Batch{Epoch: g.c.NewEpoch(), Append: g.unpersisted, ApplyFromLog: true}
		g.unpersisted = nil
		if commit := g.c.Commit(); commit > g.applied {
			b.Apply = make([]store.AppliedEffect, 0, min(commit-g.applied, 1024))
		}
		for s, commit := g.applied+1, g.c.Commit(); s <= commit; s++ {
			eff, ok := g.effects[s]
			if !ok {
				break
			}
			epoch, _ := g.tail.EpochAt(s)
			b.Apply = append(b.Apply, store.AppliedEffect{Epoch: epoch, Seq: s, Effect: *eff})
		}
		if len(b.Apply) > 0 {
			b.CommitSeq = b.Apply[len(b.Apply)-1].Seq
		}
		b.Compact = g.compactStep(g.tail)
		g.mu.Unlock()
		if b.Epoch == 0 && len(b.Append) == 0 && len(b.Apply) == 0 && b.Compact == 0 {
			continue
		}
		if len(b.Append) > 0 {
			g.yieldToLinks(stop)
		}
		start := time.Now()
		err := g.gs.Write(b)
		g.n.metrics.fsync.Observe(time.Since(start).Seconds())
		g.n.metrics.batch.Observe(float64(len(b.Append)))
		g.mu.Lock()
		if g.c.Role() != core.Main || g.stopMain != stop {
			// Stepped down during the write; the entries are durable but this role is over.
			g.mu.Unlock()
			return
		}
		if err != nil {
			g.log.Error().Err(err).Msg("log write failed; stepping down")
			g.n.noteDiskFault(err)
			g.c.Stop(command.Errorf(command.CodeUnavailable, "group %d: the main's log write failed; retry: %v", g.id, err))
			g.drain()
			g.mu.Unlock()
			return
		}
		var persisted uint64
		if n := len(b.Append); n > 0 {
			persisted = b.Append[n-1].Seq
		}
		if n := len(b.Apply); n > 0 {
			g.applied = b.Apply[n-1].Seq
			g.n.publish(g.id, b.Apply)
			for _, a := range b.Apply {
				delete(g.effects, a.Seq)
			}
			g.ov.Applied(g.applied)
			g.tail.forget(g.forgetBelow())
		}
		g.c.Persisted(b.Epoch, persisted)
		g.drain()
		if g.applied < g.c.Commit() || len(g.unpersisted) > 0 {
			g.kick()
		} else {
			for _, l := range g.links {
				l.wake()
			}
		}
		g.broadcast()
		g.mu.Unlock()
	}
}

// yieldToLinks lets the sibling links send the entries just proposed before this
// goroutine blocks in the log's write: a node may have a single scheduler slot (the dev
// cluster's nodes each get their share of the CPUs), and a blocked fsync then holds back
// every goroutine of the process, so appends sent after it reach the siblings one fsync
// later. A few yields suffice: each lets every runnable link collect and send once; a link
// that cannot send (disconnected, mid-snapshot) is not waited for.
func (g *group) yieldToLinks(stop chan struct{}) {
	for range 3 {
		g.mu.Lock()
		unsent := g.stopMain == stop && g.c.Replication() != nil && g.c.Replication().Unsent()
		g.mu.Unlock()
		if !unsent {
			return
		}
		runtime.Gosched()
	}
}

// forgetBelow is the lowest seq the main may still need to send from memory.
func (g *group) forgetBelow() uint64 {
	low := g.applied + 1
	for _, p := range g.c.Replication().Peers() {
		if p.Match+1 < low {
			low = p.Match + 1
		}
	}
	return low
}

// onAcks applies answers that arrived together, under one lock.
func (g *group) onAcks(acks []*sibling.Ack) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.learnersAnswered(acks, now)
	g.c.HandleAcks(acks, now)
	g.drain()
}

// submit executes a write at the main and returns a wait function for its answer. It is
// called in the order requests arrived on a connection, which fixes their order in the log.
//
// While the main is frozen for a hand-over, submit waits (holding up this connection's later
// requests, which keeps their order); if the main role moves meanwhile it reports moved, and
// the write, never executed here, goes to the new main.
func (g *group) submit(ctx context.Context, req *command.Request) (wait func() (*command.Reply, error), moved bool) {
	if err := g.waitFor(ctx, func() (bool, error) { return g.c.Role() != core.Main || g.frozen == 0, nil }); err != nil {
		return failed(command.Errorf(command.CodeTimeout, "group %d: hand-over did not finish within the write timeout", g.id)), false
	}
	g.mu.Lock()
	if g.c.Role() != core.Main {
		g.mu.Unlock()
		return nil, true
	}
	if g.frozen != 0 {
		g.mu.Unlock()
		return g.submit(ctx, req)
	}
	w := &waiter{done: make(chan struct{})}
	if g.execLocked(req, w) {
		close(w.done)
	}
	g.mu.Unlock()
	return func() (*command.Reply, error) {
		select {
		case <-w.done:
			if w.err != nil {
				return nil, w.err
			}
			return w.reply, nil
		case <-ctx.Done():
			return nil, g.timeoutError()
		}
	}, false
}

// execLocked executes req at the main into w: the entry it appends (or the earlier one a
// duplicate or a refusal waits for). It reports whether w can be answered at once; if not,
// w is queued until its seq commits. Call with g.mu held, as main and not frozen.
func (g *group) execLocked(req *command.Request, w *waiter) (now bool) {
	m := g.c.Replication()
	out := command.Execute(g.ov, req, command.ExecContext{Group: g.id, Epoch: m.Epoch(), Seq: m.LastSeq() + 1, Now: time.Now(),
		NewID: func() command.RID { return g.n.ids.Next(time.Now()) }})
	switch {
	case out.Err != nil:
		// A refusal may depend on pending state; answer once that state is committed.
		w.seq, w.err = m.LastSeq(), out.Err
	case out.Duplicate != nil:
		d := out.Duplicate
		w.seq = d.Seq
		w.reply = d.Reply() // with the ticket of a ticket op
	default:
		w.seq = g.c.Propose(out.Effect)
		w.reply = out.Reply
		g.drain()
	}
	if w.seq <= g.c.Commit() {
		return true
	}
	g.waiters = append(g.waiters, w)
	return false
}

// submitAsync executes a write at the main like submit, without a goroutine waiting for
// its answer: done is called once, from whichever goroutine answers it (the commit, a
// step-down, or expiryLoop once its write timeout passed), and must not block or take g.mu. It reports
// false, having done nothing, when the write needs submit instead: this node is not main,
// or the main is frozen for a hand-over.
func (g *group) submitAsync(req *command.Request, done func(*command.Reply, error)) bool {
	g.mu.Lock()
	if g.c.Role() != core.Main || g.frozen != 0 {
		g.mu.Unlock()
		return false
	}
	w := &waiter{cb: done, deadline: time.Now().Add(g.n.cfg.WriteTimeout)}
	if g.execLocked(req, w) {
		g.mu.Unlock()
		done(w.result())
		return true
	}
	g.mu.Unlock()
	return true
}

// expiryLoop answers the submitAsync waiters whose write timeout passed, until stop is
// closed. It looks every write-timeout/10, so a timeout is answered at most that late.
func (g *group) expiryLoop(stop chan struct{}) {
	t := time.NewTicker(max(g.n.cfg.WriteTimeout/10, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			g.expireBefore(now)
		}
	}
}

// expireBefore answers every submitAsync waiter whose deadline is before now with a timeout.
func (g *group) expireBefore(now time.Time) {
	g.mu.Lock()
	var due []*waiter
	kept := g.waiters[:0]
	for _, w := range g.waiters {
		if w.cb != nil && now.After(w.deadline) {
			due = append(due, w)
		} else {
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(g.waiters); i++ {
		g.waiters[i] = nil
	}
	g.waiters = kept
	var err *command.Error
	if len(due) > 0 {
		err = g.timeoutErrorLocked()
	}
	g.mu.Unlock()
	for _, w := range due {
		w.cb(nil, err)
	}
}

// timeoutError says why a write did not complete in time: quorum_unavailable when the main
// knows too few siblings answer, else timeout. Both leave the outcome unknown.
func (g *group) timeoutError() *command.Error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.timeoutErrorLocked()
}

func (g *group) timeoutErrorLocked() *command.Error {
	if g.c.Role() == core.Main && !g.c.QuorumHeard(time.Now()) {
		return command.Errorf(command.CodeQuorumUnavailable, "group %d: too few siblings answer to reach a write quorum", g.id)
	}
	return command.Errorf(command.CodeTimeout, "group %d: write not committed within the write timeout", g.id)
}

func failed(err error) func() (*command.Reply, error) {
	return func() (*command.Reply, error) { return nil, err }
}

// linearizableRead waits until the main may answer a read that arrived now from its
// committed layer (docs/replication.md case 10) and returns the read index.
func (g *group) linearizableRead(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	if g.c.Role() != core.Main {
		g.mu.Unlock()
		return 0, command.Errorf(command.CodeNoMain, "node %d is not the main of group %d", g.n.cfg.ID, g.id)
	}
	m := g.c.Replication()
	round := m.ReadRound()
	index := m.Commit()
	for _, l := range g.links {
		l.wake()
	}
	g.mu.Unlock()
	err := g.waitFor(ctx, func() (bool, error) {
		if g.c.Replication() != m {
			return false, command.Errorf(command.CodeNoMain, "group %d: main changed during a read", g.id)
		}
		// A new main serves no read before its barrier commits, nor before it has applied
		// the barrier: its commit point on arrival may lag what an older main committed and
		// acknowledged, and everything below the barrier is committed once it is.
		if !m.RoundConfirmed(round) || !g.c.BarrierCommitted() {
			return false, nil
		}
		index = max(index, g.c.BarrierSeq())
		return g.applied >= index, nil
	})
	if err != nil {
		return 0, asTimeout(err, g)
	}
	return index, nil
}

func asTimeout(err error, g *group) error {
	if err == context.DeadlineExceeded || err == context.Canceled {
		return g.timeoutError()
	}
	return err
}
