package node

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

type role int

const (
	roleNone role = iota
	roleMain
	roleSibling
)

func (r role) String() string {
	switch r {
	case roleMain:
		return command.RoleMain
	case roleSibling:
		return command.RoleSibling
	}
	return "none"
}

// waiter is a client request waiting for the commit point to reach seq.
type waiter struct {
	seq   uint64
	reply *command.Reply
	err   error
	done  chan struct{}
}

// group is this node's copy of one group and the role it plays for it. One mutex guards
// all of it; the slow parts (fsync, network) run outside the lock.
type group struct {
	n   *Node
	id  command.ServerID
	gs  GroupStore
	log zerolog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever commit, applied, rounds or role change
	role    role
	epoch   uint64 // the directory epoch this copy serves in
	commit  uint64
	applied uint64
	copyID  string
	// lastHeard is when a sibling last accepted its main's stream (whether a replication
	// connection from the main is open now is the node's count, Node.streamsOf).
	lastHeard time.Time
	// sealed is the highest epoch this copy was sealed at.
	sealed uint64
	// resyncing: the copy is being (or was being) rebuilt from a snapshot and holds
	// nothing usable; receiving: a transfer is running now (resync_recv.go).
	resyncing, receiving bool
	// resyncGen counts the times the copy's contents were thrown away (a resync began, or
	// the copy started over empty): a sibling read re-checks it after reading the store.
	resyncGen uint64

	// Main role.
	main        *sibling.Main
	tail        *tailLog
	ov          *Overlay
	effects     map[uint64]*command.Effect // decoded effects of unapplied entries
	unpersisted []sibling.Entry
	newEpoch    uint64 // epoch to fsync with the next write
	waiters     []*waiter
	links       map[uint16]*peerLink
	lastAck     map[uint16]time.Time
	frozen      uint64 // epoch of a planned promotion this main is frozen for (0: not frozen)
	fencedBy    uint64 // highest epoch a sibling answered this main with
	configSeq   uint64 // seq of the entry that starts pending config configVer
	configVer   uint64
	activated   uint64
	kickPersist chan struct{}
	stopMain    chan struct{}
	tickets     *ticketTimers                // expiry deadlines of live tickets (tickets.go)
	snapshots   map[uint16]*snapshotTransfer // snapshots being sent to siblings (resync_send.go)
	vacuumed    command.Vacuum               // bounds of the last vacuum entry this main wrote
	marks       []seqMark                    // the main's seqs by monotonic time (compact.go)
	droppable   uint64                       // highest seq of a delete or a keyed write (compact.go)

	// Sibling role.
	follower *sibling.Follower
	ftail    *tailLog
}

func newGroup(n *Node, id command.ServerID, gs GroupStore) (*group, error) {
	m, err := gs.Meta()
	if err != nil {
		return nil, err
	}
	g := &group{n: n, id: id, gs: gs, log: n.log.With().Uint16("group", uint16(id)).Logger(),
		changed: make(chan struct{}), commit: m.CommitSeq, applied: m.Applied, copyID: m.CopyID, epoch: m.Epoch}
	if m.Resyncing {
		// A resync was cut short by a crash: what the copy holds is neither the old copy
		// nor the snapshot, so it starts over as a new, empty copy (REPLICATION.md case 12C).
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
	var b Batch
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
			b.Apply = append(b.Apply, AppliedEffect{Seq: e.Seq, Effect: eff})
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
		if w.seq <= g.commit {
			close(w.done)
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
		close(w.done)
	}
	g.waiters = nil
}

// report is this copy's line in the heartbeat to the controller.
func (g *group) report() command.GroupReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := command.GroupReport{Server: uint16(g.id), Role: g.role.String(), Epoch: g.epoch, CommitSeq: g.commit,
		Applied: g.applied, CopyID: g.copyID}
	if g.resyncing {
		// No position: a copy being rebuilt holds nothing it could vouch for.
		r.CommitSeq, r.Applied, r.Resyncing = 0, 0, true
		return r
	}
	switch g.role {
	case roleMain:
		r.LastSeq = g.main.LastSeq()
		r.LastEpoch = g.epoch
		r.Activated = g.activated
		now := time.Now()
		for id, p := range g.main.Peers() {
			sp := command.SiblingProgress{Node: id, Seq: p.Match, Recent: now.Sub(g.lastAck[id]) < g.n.cfg.DownAfter}
			if t := g.snapshots[id]; t != nil && p.Snapshot {
				sp.SyncDone, sp.SyncTotal = t.done.Bytes, max(t.snap.Header().Bytes, t.done.Bytes)
			}
			r.Siblings = append(r.Siblings, sp)
		}
	case roleSibling:
		r.LastEpoch, r.LastSeq = g.follower.Last()
	default:
		if m, err := g.gs.Meta(); err == nil {
			r.LastEpoch, r.LastSeq = m.LastEpoch, m.LastSeq
		}
	}
	return r
}
