package node

import (
	"context"
	"fmt"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// QuorumOf turns a directory record into the quorum a main must satisfy and its learners
// (the simulation in location/ drives the replication cores with it too).
func QuorumOf(gi *command.GroupInfo) (sibling.Quorum, []uint16) {
	q := sibling.Quorum{Version: gi.Active.Version, Sets: [][]uint16{gi.Active.Voters}}
	voting := map[uint16]bool{}
	for _, v := range gi.Active.Voters {
		voting[v] = true
	}
	if gi.Pending != nil {
		q.Version = gi.Pending.Version
		q.Sets = append(q.Sets, gi.Pending.Voters)
		for _, v := range gi.Pending.Voters {
			voting[v] = true
		}
	}
	var learners []uint16
	for _, m := range gi.Siblings {
		// Only syncing members are learners: a stale copy (command.SiblingStale) gets nothing.
		if !voting[m.Node] && m.State == command.SiblingSyncing {
			learners = append(learners, m.Node)
		}
	}
	return q, learners
}

// becomeMain starts the main role in the directory's epoch. A main new to the epoch writes a
// barrier entry first; until it commits, entries inherited from older epochs are not known
// committed (REPLICATION.md case 3). Call with g.mu held.
func (g *group) becomeMain(gi *command.GroupInfo) error {
	chosenAt := time.Now() // inherited tickets are re-armed from here (tickets.go)
	m, err := g.gs.Meta()
	if err != nil {
		return err
	}
	if m.LastSeq == 0 && gi.Epoch > 1 && len(gi.Voters()) > 0 {
		// Past its first epoch a group's main has written entries, and its voters copied
		// them, so an empty copy lost its disk (a wipe the incarnation counter did not
		// reveal). Serving would write a barrier at seq 1 over what the voters committed;
		// staying silent lets the controller promote one of them.
		return fmt.Errorf("group %d: copy %s is empty while the group has voters %v; not serving as main of epoch %d",
			g.id, m.CopyID, gi.Voters(), gi.Epoch)
	}
	g.tail = newTailLog(g.gs, m)
	g.ov = NewOverlay(g.gs)
	g.effects = map[uint64]*command.Effect{}
	// The uncommitted tail is pending state: execution must see it.
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
	epochFirst := m.LastSeq + 1
	history := append([]sibling.EpochStart(nil), m.EpochHistory...)
	barrier := m.Epoch < gi.Epoch || m.LastEpoch < gi.Epoch
	if barrier {
		history = append(history, sibling.EpochStart{Epoch: gi.Epoch, FirstSeq: epochFirst})
		g.newEpoch = gi.Epoch
	} else {
		for _, h := range history {
			if h.Epoch == gi.Epoch {
				epochFirst = h.FirstSeq
			}
		}
	}
	q, learners := QuorumOf(gi)
	// A main that goes on into a fresh epoch (an abandoned attempt fenced it) knows more
	// is committed than its store says yet: the commit point never goes back.
	commit := min(max(m.CommitSeq, g.commit), m.LastSeq)
	g.main = sibling.NewMain(sibling.MainConfig{Group: uint16(g.id), Self: uint16(g.n.cfg.ID), Epoch: gi.Epoch,
		LastEpoch: m.LastEpoch, LastSeq: m.LastSeq, Commit: commit, EpochFirst: epochFirst, History: history,
		Quorum: q, Learners: learners, Log: g.tail, MaxBytes: 512 << 10, Window: 16})
	g.role, g.epoch = roleMain, gi.Epoch
	// The sibling role's follower describes the log as it was before this copy became main:
	// a seal after a step-down must read the log as it is now.
	g.follower, g.ftail = nil, nil
	g.lastAck = map[uint16]time.Time{}
	g.links = map[uint16]*peerLink{}
	g.snapshots = map[uint16]*snapshotTransfer{}
	g.vacuumed, g.marks = command.Vacuum{}, []seqMark{{seq: m.LastSeq, at: time.Now()}}
	g.droppable = m.LastSeq // whatever it inherited may hold tombstones and keys
	g.kickPersist = make(chan struct{}, 1)
	g.stopMain = make(chan struct{})
	g.armInheritedTickets(liveTickets, chosenAt)
	g.configVer, g.configSeq, g.activated = 0, 0, 0
	if barrier {
		seq := g.appendLocked(&command.Effect{Kind: command.EffectBarrier, At: time.Now().UTC()})
		if gi.Pending != nil {
			// A promotion's config is activated by the barrier committing under it.
			g.configVer, g.configSeq = gi.Pending.Version, seq
		}
	} else if gi.Pending != nil {
		g.configVer = gi.Pending.Version
		g.configSeq = g.appendLocked(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: time.Now().UTC()})
	}
	g.syncLinks()
	go g.persistLoop(g.stopMain, g.kickPersist)
	go g.vacuumLoop(g.stopMain)
	g.kick()
	g.broadcast()
	g.log.Info().Uint64("epoch", gi.Epoch).Uint64("lastSeq", m.LastSeq).Uint64("commit", m.CommitSeq).
		Bool("barrier", barrier).Msg("serving as main")
	return nil
}

// appendLocked assigns the next seq to eff and queues it for the log. Call with g.mu held.
func (g *group) appendLocked(eff *command.Effect) uint64 {
	epoch, seq := g.main.Assign()
	if eff.Dedupe != nil {
		eff.Dedupe.Epoch, eff.Dedupe.Seq = epoch, seq
	}
	data, err := command.EncodeEffect(eff)
	if err != nil {
		// Effects are built from validated input; failing to encode one is a bug.
		panic(err)
	}
	e := sibling.Entry{Epoch: epoch, Seq: seq, Data: data}
	g.tail.add(e)
	g.unpersisted = append(g.unpersisted, e)
	g.effects[seq] = eff
	g.ov.Add(seq, eff)
	if eff.Kind == command.EffectDelete || eff.Dedupe != nil {
		g.droppable = seq
	}
	g.noteTicketEffect(eff)
	return seq
}

// setConfig follows a directory change of the group's configs. On a new pending config the
// main switches to the joint quorum at once and writes a config entry; when that entry
// commits it reports the config activated. Call with g.mu held.
func (g *group) setConfig(gi *command.GroupInfo) {
	q, learners := QuorumOf(gi)
	if !g.main.SetQuorum(q, learners) {
		g.log.Debug().Uint64("version", q.Version).Uint64("inUse", g.main.Quorum().Version).Msg("ignored an older config")
		return
	}
	if gi.Pending != nil && gi.Pending.Version > g.configVer {
		g.configVer = gi.Pending.Version
		g.configSeq = g.appendLocked(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: time.Now().UTC()})
		g.kick()
	}
	g.syncLinks()
	g.noteCommit()
}

// noteCommit does what follows a move of the main's commit point. Call with g.mu held.
func (g *group) noteCommit() {
	c := g.main.Commit()
	if c <= g.commit {
		return
	}
	g.n.metrics.commits.Add(float64(c - g.commit))
	g.commit = c
	if g.configSeq != 0 && c >= g.configSeq && g.configVer > g.activated {
		g.activated = g.configVer
	}
	g.resolveWaiters()
	g.broadcast()
	select {
	case g.kickPersist <- struct{}{}:
	default:
	}
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
		if g.role != roleMain || g.stopMain != stop {
			g.mu.Unlock()
			return
		}
		b := &Batch{Epoch: g.newEpoch, Append: g.unpersisted}
		g.unpersisted = nil
		for s := g.applied + 1; s <= g.commit; s++ {
			eff, ok := g.effects[s]
			if !ok {
				break
			}
			epoch, _ := g.tail.EpochAt(s)
			b.Apply = append(b.Apply, AppliedEffect{Epoch: epoch, Seq: s, Effect: *eff})
		}
		if len(b.Apply) > 0 {
			b.CommitSeq = b.Apply[len(b.Apply)-1].Seq
		}
		b.Compact = g.compactStep(g.tail)
		g.mu.Unlock()
		if b.Epoch == 0 && len(b.Append) == 0 && len(b.Apply) == 0 && b.Compact == 0 {
			continue
		}
		start := time.Now()
		err := g.gs.Write(b)
		g.n.metrics.fsync.Observe(time.Since(start).Seconds())
		g.n.metrics.batch.Observe(float64(len(b.Append)))
		g.mu.Lock()
		if g.role != roleMain || g.stopMain != stop {
			// Stepped down during the write; the entries are durable but this role is over.
			g.mu.Unlock()
			return
		}
		if err != nil {
			g.log.Error().Err(err).Msg("log write failed; stepping down")
			g.stepDownLocked(command.Errorf(command.CodeUnavailable, "group %d: log write failed", g.id))
			g.mu.Unlock()
			return
		}
		if b.Epoch != 0 && g.newEpoch == b.Epoch {
			g.newEpoch = 0
		}
		if n := len(b.Append); n > 0 {
			g.main.Persisted(b.Append[n-1].Seq)
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
		g.noteCommit()
		if g.applied < g.commit || len(g.unpersisted) > 0 {
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

// forgetBelow is the lowest seq the main may still need to send from memory.
func (g *group) forgetBelow() uint64 {
	low := g.applied + 1
	for _, p := range g.main.Peers() {
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
	woken := map[uint16]bool{}
	now := time.Now()
	for _, a := range acks {
		if g.role != roleMain || a.Group != uint16(g.id) {
			return
		}
		g.lastAck[a.From] = now
		g.main.HandleAck(*a)
		if e := g.main.Fenced(); e > 0 {
			g.fencedBy = max(g.fencedBy, e)
			g.log.Warn().Uint64("epoch", g.epoch).Uint64("fencedBy", e).Msg("a sibling holds a higher epoch; stepping down")
			g.stepDownLocked(command.Errorf(command.CodeNoMain, "group %d: main was fenced by epoch %d", g.id, e))
			return
		}
		woken[a.From] = true
	}
	g.noteCommit()
	g.broadcast()
	for from := range woken {
		if l := g.links[from]; l != nil {
			l.wake()
		}
	}
}

// stepDownLocked ends the main role: pending writes fail at once with a retryable code
// (their outcome is unknown) and the pending overlay is dropped. Call with g.mu held.
func (g *group) stepDownLocked(err *command.Error) {
	if g.role != roleMain {
		return
	}
	close(g.stopMain)
	g.stopTicketTimers()
	g.closeSnapshots()
	for _, l := range g.links {
		l.close()
	}
	g.links = nil
	g.failWaiters(err)
	g.role, g.main, g.ov, g.effects, g.unpersisted, g.frozen = roleNone, nil, nil, nil, nil, 0
	g.broadcast()
}

// submit executes a write at the main and returns a wait function for its answer. It is
// called in the order requests arrived on a connection, which fixes their order in the log.
//
// While the main is frozen for a hand-over, submit waits (holding up this connection's later
// requests, which keeps their order); if the main role moves meanwhile it reports moved, and
// the write, never executed here, goes to the new main.
func (g *group) submit(ctx context.Context, req *command.Request) (wait func() (*command.Reply, error), moved bool) {
	if err := g.waitFor(ctx, func() (bool, error) { return g.role != roleMain || g.frozen == 0, nil }); err != nil {
		return failed(command.Errorf(command.CodeTimeout, "group %d: hand-over did not finish within the write timeout", g.id)), false
	}
	g.mu.Lock()
	if g.role != roleMain {
		g.mu.Unlock()
		return nil, true
	}
	if g.frozen != 0 {
		g.mu.Unlock()
		return g.submit(ctx, req)
	}
	epoch := g.main.Epoch()
	seq := g.main.LastSeq() + 1
	out := command.Execute(g.ov, req, command.ExecContext{Group: g.id, Epoch: epoch, Seq: seq, Now: time.Now(),
		NewID: func() command.RID { return g.n.ids.Next(time.Now()) }})
	w := &waiter{done: make(chan struct{})}
	switch {
	case out.Err != nil:
		// A refusal may depend on pending state; answer once that state is committed.
		w.seq, w.err = g.main.LastSeq(), out.Err
	case out.Duplicate != nil:
		d := out.Duplicate
		w.seq = d.Seq
		w.reply = d.Reply() // with the ticket of a ticket op
	default:
		w.seq = g.appendLocked(out.Effect)
		w.reply = out.Reply
		g.kick()
	}
	if w.seq <= g.commit {
		close(w.done)
	} else {
		g.waiters = append(g.waiters, w)
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

// timeoutError says why a write did not complete in time: quorum_unavailable when the main
// knows too few siblings answer, else timeout. Both leave the outcome unknown.
func (g *group) timeoutError() *command.Error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.role == roleMain {
		now := time.Now()
		q := g.main.Quorum()
		agreed := q.Agreed(func(n uint16) uint64 {
			if now.Sub(g.lastAck[n]) < g.n.cfg.DownAfter {
				return 1
			}
			return 0
		}, 1)
		if agreed == 0 {
			return command.Errorf(command.CodeQuorumUnavailable, "group %d: too few siblings answer to reach a write quorum", g.id)
		}
	}
	return command.Errorf(command.CodeTimeout, "group %d: write not committed within the write timeout", g.id)
}

func failed(err error) func() (*command.Reply, error) {
	return func() (*command.Reply, error) { return nil, err }
}

// linearizableRead waits until the main may answer a read that arrived now from its
// committed layer (REPLICATION.md case 10) and returns the read index.
func (g *group) linearizableRead(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	if g.role != roleMain {
		g.mu.Unlock()
		return 0, command.Errorf(command.CodeNoMain, "node %d is not the main of group %d", g.n.cfg.ID, g.id)
	}
	m := g.main
	round := m.ReadRound()
	index := m.Commit()
	for _, l := range g.links {
		l.wake()
	}
	g.mu.Unlock()
	err := g.waitFor(ctx, func() (bool, error) {
		if g.main != m {
			return false, command.Errorf(command.CodeNoMain, "group %d: main changed during a read", g.id)
		}
		// A new main serves no read before its barrier commits, nor before it has applied
		// the barrier: its commit point on arrival may lag what an older main committed and
		// acknowledged, and everything below the barrier is committed once it is.
		if !m.RoundConfirmed(round) || !g.barrierCommitted() {
			return false, nil
		}
		index = max(index, g.barrierSeq())
		return g.applied >= index, nil
	})
	if err != nil {
		return 0, asTimeout(err, g)
	}
	return index, nil
}

func (g *group) barrierCommitted() bool {
	b := g.barrierSeq()
	return b != 0 && g.commit >= b
}

// barrierSeq is the seq of the main's first entry of its epoch (0: none yet).
func (g *group) barrierSeq() uint64 {
	for _, h := range g.tail.history {
		if h.Epoch == g.epoch {
			return h.FirstSeq
		}
	}
	return 0
}

func asTimeout(err error, g *group) error {
	if err == context.DeadlineExceeded || err == context.Canceled {
		return g.timeoutError()
	}
	return err
}
