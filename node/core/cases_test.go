package core

import (
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// A small network of copies for the sub-cases of docs/replication.md: each copy is a real
// Group over an in-memory log, driven as node/ drives it. Messages are delivered at once
// between copies that are not cut off; nothing is lost but what a cut drops.

type copyState struct {
	c       *Group
	log     *sibling.MemLog
	epoch   uint64 // durable epoch
	commit  uint64 // durable commit point
	cut     bool   // cut off from every other copy
	removed bool
}

type testNet struct {
	t      *testing.T
	copies map[uint16]*copyState
	dir    *command.GroupInfo
	now    time.Time
}

func newTestNet(t *testing.T, ids ...uint16) *testNet {
	n := &testNet{t: t, copies: map[uint16]*copyState{}, now: t0}
	for _, id := range ids {
		n.copies[id] = &copyState{c: New(cfgFor(id), 0, 0), log: sibling.NewMemLog()}
	}
	return n
}

func (n *testNet) disk(id uint16) func() (Disk, error) {
	return func() (Disk, error) {
		cs := n.copies[id]
		last := cs.log.Last()
		le, _ := cs.log.EpochAt(last)
		var hist []sibling.EpochStart
		for q := uint64(1); q <= last; q++ {
			e, _ := cs.log.EpochAt(q)
			if len(hist) == 0 || hist[len(hist)-1].Epoch != e {
				hist = append(hist, sibling.EpochStart{Epoch: e, FirstSeq: q})
			}
		}
		return Disk{Epoch: cs.epoch, LastEpoch: le, LastSeq: last, Commit: cs.commit, History: hist, Log: cs.log}, nil
	}
}

// setDirectory hands gi to every copy, as the controller's directory would.
func (n *testNet) setDirectory(gi *command.GroupInfo) {
	n.dir = gi
	for _, id := range n.ids() {
		cs := n.copies[id]
		if cs.removed {
			continue
		}
		isSibling := slices.ContainsFunc(gi.Siblings, func(m command.Member) bool { return m.Node == id })
		if err := cs.c.Follow(gi, isSibling, n.disk(id), n.now); err != nil {
			n.t.Fatalf("copy %d: %v", id, err)
		}
		n.drain(id)
	}
}

func (n *testNet) ids() []uint16 {
	var out []uint16
	for id := range n.copies {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (n *testNet) drain(id uint16) {
	cs := n.copies[id]
	rd := cs.c.Ready()
	for _, p := range rd.Entries {
		if err := cs.log.Append(p.Entry); err != nil {
			n.t.Fatalf("copy %d: %v", id, err)
		}
	}
	for _, rc := range rd.Roles {
		if rc.Violation != nil {
			n.t.Fatalf("copy %d: invariant violation: %v", id, rc.Violation)
		}
	}
}

// write proposes an entry at main id and makes its log durable.
func (n *testNet) write(id uint16) uint64 {
	seq := n.copies[id].c.Propose(&command.Effect{Kind: command.EffectNoop, At: n.now})
	n.drain(id)
	n.persist(id)
	return seq
}

// persist is the main's persist loop: its log and new epoch are durable.
func (n *testNet) persist(id uint16) {
	cs := n.copies[id]
	e := cs.c.NewEpoch()
	cs.epoch = max(cs.epoch, e)
	cs.c.Persisted(e, cs.log.Last())
	n.drain(id)
	cs.commit = max(cs.commit, cs.c.Commit())
}

// seal seals copy id at epoch, as a controller's promotion attempt does.
func (n *testNet) seal(id uint16, epoch uint64) (lastEpoch, lastSeq uint64) {
	cs := n.copies[id]
	cs.epoch = max(cs.epoch, epoch)
	d, _ := n.disk(id)()
	le, ls, _ := cs.c.Seal(epoch, d)
	return le, ls
}

func (n *testNet) authorize(epoch uint64, main uint16) bool {
	return n.dir != nil && n.dir.Epoch == epoch && n.dir.Main == main
}

// deliver sends whatever each main has for each sibling, and the acks back, until nothing
// moves; heartbeats, when set, add one heartbeat per sibling first.
func (n *testNet) deliver(heartbeats bool) {
	for round := 0; round < 1000; round++ {
		moved := false
		for _, id := range n.ids() {
			m := n.copies[id]
			main := m.c.Replication()
			if main == nil || m.cut || m.removed {
				continue
			}
			peers := main.Peers()
			for _, to := range n.ids() {
				if _, ok := peers[to]; !ok {
					continue
				}
				var msgs []*sibling.Append
				if heartbeats && round == 0 {
					if hb := main.Heartbeat(to); hb != nil {
						msgs = append(msgs, hb)
					}
				}
				for {
					a, err := main.NextAppend(to)
					if err != nil {
						n.t.Fatalf("main %d to %d: %v", id, to, err)
					}
					if a == nil {
						break
					}
					msgs = append(msgs, a)
				}
				if len(msgs) == 0 {
					continue
				}
				moved = true
				s := n.copies[to]
				if s.cut || s.removed {
					continue
				}
				writes, acks := s.c.Step(msgs, n.authorize, n.now)
				n.drain(to)
				for i := range writes {
					w := &writes[i]
					s.epoch = max(s.epoch, w.Epoch)
					if w.Truncate > 0 {
						s.log.Truncate(w.Truncate)
					}
					if err := s.log.Append(w.Append...); err != nil {
						n.t.Fatalf("copy %d: %v", to, err)
					}
					s.commit = max(s.commit, w.Commit)
					s.c.Written(w)
				}
				m.c.HandleAcks(acks, n.now)
				n.drain(id)
			}
		}
		if !moved {
			return
		}
	}
	n.t.Fatal("messages still moving after 1000 rounds")
}

func voters(epoch uint64, main uint16, active []uint16, others ...uint16) *command.GroupInfo {
	gi := &command.GroupInfo{Server: 1, Epoch: epoch, Main: main, Active: command.Config{Version: epoch, Voters: active}}
	for _, v := range append(slices.Clone(active), others...) {
		if v != main {
			gi.Siblings = append(gi.Siblings, command.Member{Node: v, State: command.SiblingVoting})
		}
	}
	return gi
}

// Case 2 scenario A: the first promotion must not deadlock. Main 4 of {1,2,3} crashes
// after its entry 3 reached 1 and 3 but not 2. The controller seals 1 and 2 at epoch 2
// and chooses 1 (highest last entry) with the new config {2,3}. Copy 3 was never sealed
// (still epoch 1) and must adopt the authorized epoch; copy 2 must take the re-sent (1,3)
// although it carries an older epoch than the message. Then the barrier commits.
func TestCase2A_FirstPromotionDoesNotDeadlock(t *testing.T) {
	n := newTestNet(t, 1, 2, 3, 4)
	n.setDirectory(voters(1, 4, []uint16{1, 2, 3}))
	n.write(4)
	n.write(4)
	n.deliver(false)
	n.copies[2].cut = true
	n.write(4)
	n.deliver(false)
	if got := n.copies[2].log.Last(); got != 3 { // the barrier and two writes
		t.Fatalf("setup: copy 2 holds %d entries, want 3", got)
	}
	n.copies[4].removed = true // crashed
	n.copies[2].cut = false
	if le, ls := n.seal(1, 2); le != 1 || ls != 4 {
		t.Fatalf("seal of copy 1: last (%d,%d), want (1,4)", le, ls)
	}
	n.seal(2, 2)
	n.setDirectory(voters(2, 1, []uint16{2, 3}))
	n.persist(1)
	n.deliver(false)
	c := n.copies[1].c
	if !c.BarrierCommitted() || c.Commit() < 5 {
		t.Fatalf("new main's commit %d (barrier at %d committed: %v): the first promotion deadlocked", c.Commit(), c.BarrierSeq(), c.BarrierCommitted())
	}
	for _, id := range []uint16{2, 3} {
		if le, _ := n.copies[id].log.EpochAt(5); le != 2 || n.copies[id].log.Last() != 5 {
			t.Fatalf("copy %d holds %d entries (seq 5 of epoch %d), want the barrier (2,5)", id, n.copies[id].log.Last(), le)
		}
	}
}

// Case 3 scenario A (Raft's figure 8): a new main that copies an entry of an older epoch to
// a majority must not count it committed before an entry of its own epoch commits. Copy 1
// holds (1,3) alone; it becomes main of epoch 3 and re-sends it to 2 and 3, which ack it,
// but its own persist of the barrier has not happened: nothing at or above 3 is committed.
// Once its barrier is durable everywhere, 3 commits with it.
func TestCase3A_OlderEpochEntryCommitsOnlyWithTheBarrier(t *testing.T) {
	n := newTestNet(t, 1, 2, 3, 4)
	n.setDirectory(voters(1, 4, []uint16{1, 2, 3}))
	n.write(4)
	n.deliver(false)
	n.copies[2].cut, n.copies[3].cut = true, true
	n.write(4) // (1,3) reaches only copy 1
	n.deliver(false)
	n.copies[4].removed = true
	n.copies[2].cut, n.copies[3].cut = false, false
	n.seal(1, 3)
	n.seal(2, 3)
	n.setDirectory(voters(3, 1, []uint16{2, 3}))
	// The barrier (3,4) is proposed but the main has not persisted it: the siblings may hold
	// (1,3) and (3,4), yet (1,3) must stay uncommitted until the barrier counts.
	n.deliver(false)
	if c := n.copies[1].c.Commit(); c >= 3 {
		t.Fatalf("commit %d before the barrier committed: (1,3) was counted by its copies", c)
	}
	for _, id := range []uint16{2, 3} {
		if n.copies[id].commit >= 3 {
			t.Fatalf("copy %d believes commit %d before the barrier committed", id, n.copies[id].commit)
		}
	}
	n.persist(1)
	n.deliver(true)
	if c := n.copies[1].c.Commit(); c < 4 || !n.copies[1].c.BarrierCommitted() {
		t.Fatalf("commit %d after the barrier was durable on the main and both siblings, want 4", c)
	}
}

// Case 7 scenario D: an idle group is still heard. With no writes, the main's heartbeats
// keep every sibling hearing it; when they stop, a sibling stops counting as hearing after
// DownAfter, so an automatic seal is accepted.
func TestCase7D_IdleGroupIsHeardThroughHeartbeats(t *testing.T) {
	n := newTestNet(t, 1, 2, 3)
	n.setDirectory(voters(1, 1, []uint16{2, 3}))
	n.persist(1)
	n.deliver(false)
	for i := 0; i < 8; i++ { // 2 s of an idle group, a heartbeat every down-after/4
		n.now = n.now.Add(250 * time.Millisecond)
		n.deliver(true)
		for _, id := range []uint16{2, 3} {
			if !n.copies[id].c.Heard(n.now) {
				t.Fatalf("after %v idle, copy %d does not hear its main", n.now.Sub(t0), id)
			}
		}
	}
	req := &command.SealRequest{Server: 1, Epoch: 2, Auto: true}
	if err := n.copies[2].c.CheckSeal(req, true, n.now); err == nil {
		t.Fatal("an automatic seal was accepted while the main's heartbeats arrive")
	}
	n.now = n.now.Add(1100 * time.Millisecond) // the heartbeats stop
	if n.copies[2].c.Heard(n.now) {
		t.Fatal("copy 2 still hears a main silent for longer than down-after")
	}
	if err := n.copies[2].c.CheckSeal(req, true, n.now); err != nil {
		t.Fatalf("automatic seal after the main went silent: %v", err)
	}
}

// Case 10 scenario B: a new main serves no linearizable read before its barrier commits,
// although its own commit point may already cover entries a read could return.
func TestCase10B_NoReadBeforeTheBarrierCommits(t *testing.T) {
	n := newTestNet(t, 1, 2, 3, 4)
	n.setDirectory(voters(1, 4, []uint16{1, 2, 3}))
	n.write(4)
	n.deliver(true)
	n.copies[4].removed = true
	n.seal(1, 2)
	n.seal(2, 2)
	n.setDirectory(voters(2, 1, []uint16{2, 3}))
	c := n.copies[1].c
	if c.BarrierCommitted() {
		t.Fatal("the barrier counts as committed before it was even persisted")
	}
	m := c.Replication()
	round := m.ReadRound()
	n.deliver(true) // siblings answer the round, but the main has not persisted its barrier
	if m.RoundConfirmed(round) && c.BarrierCommitted() {
		t.Fatal("a read could be served before the barrier committed")
	}
	n.persist(1)
	n.deliver(true)
	if !c.BarrierCommitted() || !m.RoundConfirmed(round) {
		t.Fatalf("barrier committed %v, round %d confirmed %v after everything was delivered", c.BarrierCommitted(), round, m.RoundConfirmed(round))
	}
}

// Case 10 scenario C: during a membership change a read round counts every config in use.
// With the joint config {2,3} and {4,5}, answers from the new config alone do not confirm
// a round; once the old config's voters answer too, it is confirmed.
func TestCase10C_ReadRoundCountsTheJointConfig(t *testing.T) {
	n := newTestNet(t, 1, 2, 3, 4, 5)
	gi := voters(1, 1, []uint16{2, 3}, 4, 5)
	gi.Pending = &command.Config{Version: 2, Voters: []uint16{4, 5}}
	n.setDirectory(gi)
	n.persist(1)
	n.deliver(true)
	m := n.copies[1].c.Replication()
	n.copies[2].cut, n.copies[3].cut = true, true
	round := m.ReadRound()
	n.deliver(true)
	if m.RoundConfirmed(round) {
		t.Fatal("a read round was confirmed by the new config alone")
	}
	n.copies[2].cut, n.copies[3].cut = false, false
	n.deliver(true)
	if !m.RoundConfirmed(round) {
		t.Fatal("a read round answered by majorities of both configs is not confirmed")
	}
}
