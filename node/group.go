package node

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// waiter is a client request waiting for the commit point to reach seq. It is answered
// once: by closing done (a caller blocked in submit's wait) or by calling cb (submitAsync).
type waiter struct {
	seq   uint64
	reply *command.Reply
	err   error
	done  chan struct{}
	cb    func(*command.Reply, error)
	// deadline: submitAsync's write timeout, enforced by the main's expiryLoop (one
	// ticker per group rather than a timer per write, whose arming wakes the poller).
	deadline time.Time
}

func (w *waiter) result() (*command.Reply, error) {
	if w.err != nil {
		return nil, w.err
	}
	return w.reply, nil
}

// answer delivers the outcome. Call with g.mu held, once w has left g.waiters.
func (w *waiter) answer() {
	if w.cb == nil {
		close(w.done)
		return
	}
	w.cb(w.result())
}

// group is this node's copy of one group: the driver of its core (package core), which
// decides roles, epochs and commit points, around the store, the replication links and the
// clients waiting for answers. One mutex guards all of it; the slow parts (fsync, network)
// run outside the lock.
type group struct {
	n   *Node
	id  command.ServerID
	gs  store.GroupStore
	log zerolog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever commit, applied, rounds or role change
	c       *core.Group
	applied uint64
	copyID  string
	// resyncing: the copy is being (or was being) rebuilt from a snapshot and holds
	// nothing usable; receiving: a transfer is running now (resync_recv.go).
	resyncing, receiving bool
	// resyncGen counts the times the copy's contents were thrown away (a resync began, or
	// the copy started over empty): a sibling read re-checks it after reading the store.
	resyncGen uint64

	// Main role.
	tail        *tailLog
	ov          *Overlay
	effects     map[uint64]*command.Effect // decoded effects of unapplied entries
	unpersisted []sibling.Entry
	waiters     []*waiter
	links       map[uint16]*peerLink
	frozen      uint64 // epoch of a planned promotion this main is frozen for (0: not frozen)
	kickPersist chan struct{}
	stopMain    chan struct{}
	tickets     *ticketTimers                // expiry deadlines of live tickets (tickets.go)
	snapshots   map[uint16]*snapshotTransfer // snapshots being sent to siblings (resync_send.go)
	vacuumed    command.Vacuum               // bounds of the last vacuum entry this main wrote
	marks       []seqMark                    // the main's seqs by monotonic time (compact.go)
	droppable   uint64                       // highest seq of a delete or a keyed write (compact.go)
	assignedAt  []seqMark                    // uncommitted entries by when their seq was assigned (sibyl_commit_seconds)
	holds       map[uint16]*learnerHold      // the log kept for learners until they vote (register_hold.go)
	logBytes    uint64                       // bytes of entries this main logged
	byteMarks   []byteMark                   // logBytes at some seqs (register_hold.go)
	load        *loadRing                    // commits per second and their latency, last minute (load.go)

	// Sibling role.
	ftail *tailLog

	roleMeta store.Meta // the store's meta when the copy last took a role (disk)
}

func newGroup(n *Node, id command.ServerID, gs store.GroupStore) (*group, error) {
	m, err := gs.Meta()
	if err != nil {
		return nil, err
	}
	g := &group{n: n, id: id, gs: gs, log: n.log.With().Uint16("group", uint16(id)).Logger(),
		changed: make(chan struct{}), applied: m.Applied, copyID: m.CopyID}
	g.c = core.New(core.Config{Group: uint16(id), Self: uint16(n.cfg.ID), MaxBytes: 512 << 10, Window: 16,
		DownAfter: n.cfg.DownAfter}, m.Epoch, m.CommitSeq)
	if m.Resyncing {
		// A resync was cut short by a crash: what the copy holds is neither the old copy
		// nor the snapshot, so it starts over as a new, empty copy (docs/replication.md case 12C).
		g.resyncing = true
		if err := g.dropResync(); err != nil {
			return nil, err
		}
		return g, nil
	}
	// Boot recovery: apply what was committed but not yet applied before a restart.
	if m.Applied < m.CommitSeq {
		if err := g.applyRange(m.Applied+1, m.CommitSeq); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// applyRange applies committed entries from..to to the committed layer (used at boot).
func (g *group) applyRange(from, to uint64) error {
	b := store.Batch{ApplyFromLog: true}
	for s := from; s <= to; {
		es, err := g.gs.Entries(s, to, 4<<20)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			eff, err := command.DecodeEffect(e.Data)
			if err != nil {
				return err
			}
			b.Apply = append(b.Apply, store.AppliedEffect{Seq: e.Seq, Effect: eff})
		}
		s = es[len(es)-1].Seq + 1
	}
	if len(b.Apply) == 0 {
		return nil
	}
	if err := g.gs.Write(&b); err != nil {
		return err
	}
	g.applied = b.Apply[len(b.Apply)-1].Seq
	return nil
}

// broadcast wakes everyone waiting on a change. Call with g.mu held.
func (g *group) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// waitFor blocks until cond (evaluated with g.mu held) is true or ctx ends.
func (g *group) waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		g.mu.Lock()
		ok, err := cond()
		ch := g.changed
		g.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// resolveWaiters answers every waiter whose entry is committed. Call with g.mu held.
func (g *group) resolveWaiters() {
	kept := g.waiters[:0]
	for _, w := range g.waiters {
		if w.seq <= g.c.Commit() {
			w.answer()
		} else {
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(g.waiters); i++ {
		g.waiters[i] = nil
	}
	g.waiters = kept
}

// failWaiters answers every waiting request with err (outcome unknown). Call with g.mu held.
func (g *group) failWaiters(err *command.Error) {
	for _, w := range g.waiters {
		w.reply, w.err = nil, err
		w.answer()
	}
	g.waiters = nil
}

// report is this copy's line in the heartbeat to the controller.
func (g *group) report() command.GroupReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	r := g.c.Report(now, func() (uint64, uint64) {
		m, err := g.gs.Meta()
		if err != nil {
			return 0, 0
		}
		return m.LastEpoch, m.LastSeq
	})
	r.Applied, r.CopyID = g.applied, g.copyID
	if rec, ok := g.n.homes.get(g.id); ok {
		r.Home, r.HomeGen = rec.Home, rec.Gen
	}
	if g.resyncing {
		// No position: a copy being rebuilt holds nothing it could vouch for.
		r.CommitSeq, r.Applied, r.LastEpoch, r.LastSeq, r.Resyncing = 0, 0, 0, 0, true
		r.Role = core.None.String()
		r.Siblings = nil
		return r
	}
	if g.c.Role() == core.Main && g.c.Replication() != nil {
		g.checkHolds(now)
	}
	if r.Role == core.Main.String() && g.load != nil {
		r.Load = g.load.snapshot(now)
	}
	for i := range r.Siblings {
		sp := &r.Siblings[i]
		sp.Aborted = g.holdAborted(sp.Node)
		if t := g.snapshots[sp.Node]; t != nil && g.c.Replication().Peers()[sp.Node].Snapshot {
			sp.SyncDone, sp.SyncTotal = t.done.Bytes, max(t.snap.Header().Bytes, t.done.Bytes)
		}
	}
	return r
}

// disk reads the copy's durable state for the core when it takes a role; the log it
// returns is the role's tailLog. Call with g.mu held.
func (g *group) disk() (core.Disk, error) {
	m, err := g.gs.Meta()
	if err != nil {
		return core.Disk{}, err
	}
	g.roleMeta = m
	return diskOf(m, newTailLog(g.gs, m)), nil
}

func diskOf(m store.Meta, tl *tailLog) core.Disk {
	return core.Disk{Epoch: m.Epoch, LastEpoch: m.LastEpoch, LastSeq: m.LastSeq, Commit: m.CommitSeq,
		History: m.EpochHistory, Log: tl}
}

// drain carries out what the core decided: role changes, new entries, a moved commit
// point, siblings to wake. Call with g.mu held after every input to the core.
func (g *group) drain() {
	rd := g.c.Ready()
	if rd.Empty() {
		return
	}
	for _, rc := range rd.Roles {
		if err := g.roleChanged(rc); err != nil {
			g.log.Error().Err(err).Msg("cannot take the role the directory assigns")
			g.c.Stop(command.Errorf(command.CodeUnavailable, "group %d: %v", g.id, err))
			g.drain()
			return
		}
	}
	var now time.Time
	if len(rd.Entries) > 0 || rd.CommitTo != 0 {
		now = time.Now()
	}
	for i := range rd.Entries {
		g.logged(&rd.Entries[i])
		g.assignedAt = append(g.assignedAt, seqMark{seq: rd.Entries[i].Entry.Seq, at: now})
	}
	if rd.CommitTo != 0 {
		g.n.metrics.commits.Add(float64(rd.CommitTo - rd.CommitFrom))
		g.observeCommits(rd.CommitTo, now)
		g.resolveWaiters()
	}
	if g.c.Role() == core.Main {
		if rd.Peers {
			g.syncLinks()
		}
		if len(rd.Entries) > 0 || rd.CommitTo != 0 {
			g.kick()
		} else {
			for _, id := range rd.Woken {
				if l := g.links[id]; l != nil {
					l.wake()
				}
			}
		}
	}
	if len(rd.Roles) > 0 || rd.CommitTo != 0 || len(rd.Woken) > 0 {
		g.broadcast()
	}
}

// observeCommits records how long each entry committed through commit waited for it.
// Call with g.mu held.
func (g *group) observeCommits(commit uint64, now time.Time) {
	n := 0
	if g.load == nil && len(g.assignedAt) > 0 {
		g.load = &loadRing{}
	}
	for n < len(g.assignedAt) && g.assignedAt[n].seq <= commit {
		d := now.Sub(g.assignedAt[n].at)
		g.n.metrics.commitSeconds.Observe(d.Seconds())
		g.load.observe(now, d)
		n++
	}
	g.assignedAt = append(g.assignedAt[:0], g.assignedAt[n:]...)
}

// roleChanged sets up or tears down what the driver keeps for a role. Call with g.mu held.
func (g *group) roleChanged(rc core.RoleChange) error {
	switch {
	case rc.From == core.Main:
		g.endMain(rc.Reason)
	case rc.From == core.Sibling:
		g.ftail = nil
		if rc.Violation != nil {
			g.log.Error().Err(rc.Violation).Msg("invariant violation; this copy stops serving the group")
		} else {
			g.log.Info().Msg("no longer following a main")
		}
	}
	switch rc.To {
	case core.Main:
		return g.startMain(rc)
	case core.Sibling:
		g.ftail = rc.Disk.Log.(*tailLog)
		g.log.Info().Uint64("epoch", rc.Epoch).Uint64("lastSeq", rc.Disk.LastSeq).Msg("serving as sibling")
	}
	return nil
}

// logged takes a new entry of the main's into its log cache, the queue to persist, and
// the pending layer. Call with g.mu held.
func (g *group) logged(p *core.Proposal) {
	g.tail.add(p.Entry)
	g.noteLoggedBytes(p.Entry.Seq, len(p.Entry.Data))
	g.unpersisted = append(g.unpersisted, p.Entry)
	g.effects[p.Entry.Seq] = p.Effect
	g.ov.Add(p.Entry.Seq, p.Effect)
	if p.Effect.Kind == command.EffectDelete || p.Effect.Dedupe != nil {
		g.droppable = p.Entry.Seq
	}
	g.noteTicketEffect(p.Effect)
}

// appendLocked appends eff as the main's next entry and returns its seq. Call with g.mu
// held, as main.
func (g *group) appendLocked(eff *command.Effect) uint64 {
	seq := g.c.Propose(eff)
	g.drain()
	return seq
}
