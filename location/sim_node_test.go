package location

import (
	"fmt"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/sibling"
)

// simNode is a node's copy of the simulated group, modelled on node/ (ctrl.go follow,
// group_main.go, group_sibling.go, seal.go, group.go report) around the real cores.

const (
	roleNoneSim = iota
	roleMainSim
	roleSiblingSim
)

type simNode struct {
	s     *sim
	id    uint16
	clock simClock
	up    bool
	// process
	instance int
	joined   bool
	gen      uint64
	nextHB   time.Time
	dir      *command.GroupInfo
	dirIdx   uint64
	// disk: the copy
	log         *sibling.MemLog
	store       node.GroupStore // the committed layer (sim_state_test.go)
	applied     uint64
	epoch       uint64 // durable epoch
	commit      uint64 // durable commit point
	copyID      int
	incarnation uint64
	// memory
	persisted uint64 // main: its own log is durable up to here
	role      int
	roleEpoch uint64
	main      *sibling.Main
	f         *sibling.Follower
	fencedBy  uint64
	sealed    uint64
	newEpoch  uint64
	configVer uint64
	configSeq uint64
	activated uint64
	memCommit uint64 // the commit point this process acted on
	heard     bool
	lastHeard time.Time
	lastAck   map[uint16]time.Time
	ov        *node.Overlay        // main: the pending layer
	tickets   map[string]simTicket // main: ticket deadlines
}

func newSimNode(s *sim, id uint16) *simNode {
	return &simNode{s: s, id: id, clock: s.newClock(), log: sibling.NewMemLog(), store: newSimStore(), copyID: 1, incarnation: 1, instance: 1}
}

func (n *simNode) now() time.Time { return n.clock.at(n.s.now) }

func (n *simNode) copyIDString() string { return fmt.Sprintf("c%d.%d", n.id, n.copyID) }

func (n *simNode) String() string {
	le, _ := n.log.EpochAt(n.log.Last())
	return fmt.Sprintf("up=%v joined=%v role=%d roleEpoch=%d epoch=%d last=(%d,%d) commit=%d mem=%d persisted=%d copy=%s fencedBy=%d dirIdx=%d",
		n.up, n.joined, n.role, n.roleEpoch, n.epoch, le, n.log.Last(), n.commit, n.memCommit, n.persisted, n.copyIDString(), n.fencedBy, n.dirIdx)
}

func historyOf(l *sibling.MemLog) []sibling.EpochStart {
	var h []sibling.EpochStart
	for q := uint64(1); q <= l.Last(); q++ {
		e, _ := l.EpochAt(q)
		if len(h) == 0 || h[len(h)-1].Epoch != e {
			h = append(h, sibling.EpochStart{Epoch: e, FirstSeq: q})
		}
	}
	return h
}

func (n *simNode) follower() *sibling.Follower {
	last := n.log.Last()
	le, _ := n.log.EpochAt(last)
	return sibling.NewFollower(sibling.FollowerState{Group: simGroup, Self: n.id, Epoch: n.epoch, LastEpoch: le, LastSeq: last,
		Commit: n.commit, History: historyOf(n.log), Log: n.log})
}

func (n *simNode) sendJoin() {
	if n.s.term == nil {
		return
	}
	n.s.send(&simMsg{kind: mJoin, from: n.id, to: n.s.term.ctrl,
		join: &command.JoinRequest{ID: n.id, Instance: fmt.Sprintf("n%d-%d", n.id, n.instance), Incarnation: n.incarnation}})
}

// tick: the node's heartbeat timer (every down-after/4 of its clock): a heartbeat to the
// controller leader (a join first), and the main's replication heartbeats.
func (n *simNode) tick() {
	if !n.up {
		return
	}
	if n.role == roleMainSim {
		n.expireTickets()
		if n.s.rng.Intn(3) == 0 {
			n.fsync() // the persist loop: a group commit about every 3 ms
		}
	}
	if n.now().Before(n.nextHB) {
		return
	}
	n.nextHB = n.now().Add(simDownAfter / 4)
	if !n.joined {
		n.sendJoin()
		return
	}
	if n.s.term != nil {
		n.gen++
		n.s.send(&simMsg{kind: mHeartbeat, from: n.id, to: n.s.term.ctrl, hb: &command.Heartbeat{Node: n.id,
			Instance: fmt.Sprintf("n%d-%d", n.id, n.instance), Incarnation: n.incarnation, Generation: n.gen,
			Groups: []command.GroupReport{n.report()}}})
	}
	if n.role == roleMainSim {
		n.heartbeats()
	}
}

// report is group.report.
func (n *simNode) report() command.GroupReport {
	r := command.GroupReport{Server: simGroup, Epoch: n.roleEpoch, CommitSeq: n.memCommit, Applied: n.memCommit, CopyID: n.copyIDString()}
	switch n.role {
	case roleMainSim:
		r.Role = command.RoleMain
		r.LastSeq, r.LastEpoch, r.Activated = n.main.LastSeq(), n.roleEpoch, n.activated
		peers := n.main.Peers()
		for _, id := range sortedKeys(peers) {
			at, ok := n.lastAck[id]
			r.Siblings = append(r.Siblings, command.SiblingProgress{Node: id, Seq: peers[id].Match,
				Recent: ok && n.now().Sub(at) < simDownAfter})
		}
	case roleSiblingSim:
		r.Role = command.RoleSibling
		r.LastEpoch, r.LastSeq = n.f.Last()
	default:
		r.Role = "none"
		r.LastSeq = n.log.Last()
		r.LastEpoch, _ = n.log.EpochAt(r.LastSeq)
	}
	return r
}

func (n *simNode) receive(m *simMsg) {
	if !n.up {
		return
	}
	switch m.kind {
	case mAppend:
		n.onAppend(m)
	case mAck:
		n.onAck(m.ack)
	case mHBReply, mDir:
		if m.rejoin {
			n.joined = false
			return
		}
		if m.join != nil {
			if m.join.Instance != fmt.Sprintf("n%d-%d", n.id, n.instance) {
				return // an answer to an earlier process
			}
			n.joined = true
			n.incarnation = m.sealedAt // adopts the recorded incarnation
		}
		if !n.joined || m.dir == nil || m.dirIdx <= n.dirIdx {
			return
		}
		n.dir, n.dirIdx = m.dir, m.dirIdx
		n.follow()
	case mSeal:
		n.onSeal(m)
	}
}

// follow is group.follow.
func (n *simNode) follow() {
	gi := n.dir
	self := n.id
	isSibling, stale := false, false
	for _, m := range gi.Siblings {
		if m.Node != self {
			continue
		}
		stale = m.State == command.SiblingStale
		if stale || (m.StaleCopyID != "" && m.StaleCopyID == n.copyIDString()) {
			n.retireStale(m.StaleCopyID)
		}
		isSibling = !stale
	}
	switch {
	case gi.Main == self && gi.Epoch < n.fencedBy:
	case gi.Main == self && n.log.Last() == 0 && gi.Epoch > 1 && len(gi.Voters()) > 0:
		// node/'s becomeMain refuses: an empty copy while the group has voters lost its disk.
	case gi.Main == self && (n.role != roleMainSim || n.roleEpoch != gi.Epoch):
		if n.role == roleMainSim {
			n.stepDown()
		}
		n.becomeMain(gi)
	case gi.Main == self:
		n.setConfig(gi)
	case isSibling && (n.role != roleSiblingSim || n.roleEpoch != gi.Epoch):
		n.becomeSibling(gi)
	case !isSibling && gi.Main != self && n.role == roleMainSim:
		n.stepDown()
	case !isSibling && gi.Main != self && n.role == roleSiblingSim:
		n.role = roleNoneSim
	}
}

// retireStale: the copy was demoted to stale; it is wiped and rebuilt (the simulation
// rebuilds it by replication from seq 1 rather than from a snapshot).
func (n *simNode) retireStale(staleID string) {
	if n.role == roleSiblingSim {
		n.role, n.f = roleNoneSim, nil
	}
	if n.role == roleMainSim || (staleID != "" && staleID != n.copyIDString()) || (staleID == "" && n.log.Last() == 0) {
		return
	}
	n.s.tracef("node %d wipes its stale copy %s", n.id, n.copyIDString())
	n.wipe()
}

func (n *simNode) wipe() {
	n.log, n.epoch, n.commit, n.memCommit, n.copyID = sibling.NewMemLog(), 0, 0, 0, n.copyID+1
	n.store, n.applied = newSimStore(), 0
	n.f = nil
	n.s.chk.wiped(n)
}

func (n *simNode) becomeMain(gi *command.GroupInfo) {
	last := n.log.Last()
	le, _ := n.log.EpochAt(last)
	epochFirst := last + 1
	history := historyOf(n.log)
	barrier := n.epoch < gi.Epoch || le < gi.Epoch
	if barrier {
		history = append(history, sibling.EpochStart{Epoch: gi.Epoch, FirstSeq: epochFirst})
		n.newEpoch = gi.Epoch
	} else {
		for _, h := range history {
			if h.Epoch == gi.Epoch {
				epochFirst = h.FirstSeq
			}
		}
	}
	q, learners := node.QuorumOf(gi)
	n.main = sibling.NewMain(sibling.MainConfig{Group: simGroup, Self: n.id, Epoch: gi.Epoch, LastEpoch: le, LastSeq: last,
		Commit: min(max(n.commit, n.memCommit), last), EpochFirst: epochFirst, History: history, Quorum: q, Learners: learners, Log: n.log,
		MaxBytes: 64, Window: 4})
	n.role, n.roleEpoch = roleMainSim, gi.Epoch
	n.f = nil // as node/: a seal after a step-down reads the log as it is
	n.persisted = last
	n.memCommit = max(n.memCommit, n.commit)
	n.lastAck = map[uint16]time.Time{}
	n.configVer, n.configSeq, n.activated = 0, 0, 0
	n.startMainState()
	n.s.chk.becameMain(n, gi.Epoch)
	n.s.tracef("node %d serves as main of epoch %d (last (%d,%d), commit %d, barrier %v)", n.id, gi.Epoch, le, last, n.commit, barrier)
	if barrier {
		seq := n.appendEffect(&command.Effect{Kind: command.EffectBarrier, At: n.now()})
		if gi.Pending != nil {
			n.configVer, n.configSeq = gi.Pending.Version, seq
		}
	} else if gi.Pending != nil {
		n.configVer = gi.Pending.Version
		n.configSeq = n.appendEffect(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: n.now()})
	}
	n.pump()
}

func (n *simNode) setConfig(gi *command.GroupInfo) {
	q, learners := node.QuorumOf(gi)
	n.main.SetQuorum(q, learners)
	if gi.Pending != nil && gi.Pending.Version > n.configVer {
		n.configVer = gi.Pending.Version
		n.configSeq = n.appendEffect(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: n.now()})
	}
	n.noteCommit()
	n.pump()
}

func (n *simNode) becomeSibling(gi *command.GroupInfo) {
	if n.role == roleMainSim {
		n.stepDown()
	}
	n.f = n.follower()
	n.role, n.roleEpoch = roleSiblingSim, gi.Epoch
	n.heard = false
}

func (n *simNode) stepDown() {
	if n.role != roleMainSim {
		return
	}
	n.s.tracef("node %d steps down as main of %d", n.id, n.roleEpoch)
	n.role, n.main = roleNoneSim, nil
	n.stopMainState()
	n.s.chk.steppedDown(n)
}

// fsync is the persist loop's write: the main's log is durable to its end, with its new
// epoch and the commit point applied.
func (n *simNode) fsync() {
	if n.role != roleMainSim {
		return
	}
	commit := n.main.Commit()
	if n.newEpoch != 0 {
		n.s.chk.epochDurable(n, max(n.epoch, n.newEpoch))
		n.epoch, n.newEpoch = max(n.epoch, n.newEpoch), 0
	}
	n.setDurableCommit(commit)
	n.applyTo(n.commit)
	n.persisted = n.log.Last()
	n.main.Persisted(n.persisted)
	n.noteCommit()
	n.pump()
}

func (n *simNode) setDurableCommit(c uint64) {
	if c < n.commit {
		n.s.fatalf("node %d: durable commit point went back from %d to %d (invariant 5)", n.id, n.commit, c)
	}
	n.commit = c
}

// noteCommit follows a move of the main's commit point.
func (n *simNode) noteCommit() {
	c := n.main.Commit()
	if c < n.memCommit {
		n.s.fatalf("node %d: main's commit point went back from %d to %d (invariant 5)", n.id, n.memCommit, c)
	}
	if c == n.memCommit {
		n.s.chk.resolve(n)
		return
	}
	prev := n.memCommit
	n.memCommit = c
	if n.configSeq != 0 && c >= n.configSeq && n.configVer > n.activated {
		n.activated = n.configVer
	}
	n.s.chk.committed(n, prev, c)
	n.s.chk.resolve(n)
}

func (n *simNode) pump() {
	if n.role != roleMainSim {
		return
	}
	for _, id := range sortedKeys(n.main.Peers()) {
		for {
			a, err := n.main.NextAppend(id)
			if err != nil {
				n.s.fatalf("node %d: %v", n.id, err)
			}
			if a == nil {
				break
			}
			n.s.send(&simMsg{kind: mAppend, from: n.id, to: id, app: a})
		}
	}
}

func (n *simNode) heartbeats() {
	for _, id := range sortedKeys(n.main.Peers()) {
		if hb := n.main.Heartbeat(id); hb != nil {
			n.s.send(&simMsg{kind: mAppend, from: n.id, to: id, app: hb})
		}
	}
}

func (n *simNode) onAck(a *sibling.Ack) {
	if n.role != roleMainSim {
		return
	}
	n.lastAck[a.From] = n.now()
	n.main.HandleAck(*a)
	if e := n.main.Fenced(); e > 0 {
		n.fencedBy = max(n.fencedBy, e)
		n.stepDown()
		return
	}
	n.noteCommit()
	n.pump()
}

// onAppend is handleAppends for one message: step, make durable, ack.
func (n *simNode) onAppend(m *simMsg) {
	if n.role != roleSiblingSim {
		return
	}
	authorize := func(epoch uint64, main uint16) bool {
		return n.dir != nil && n.dir.Epoch == epoch && n.dir.Main == main
	}
	st := n.f.Step(m.app, authorize)
	if st.Violation != nil {
		n.s.fatalf("node %d: invariant violation reported by the follower: %v", n.id, st.Violation)
	}
	if st.Epoch != 0 {
		n.s.chk.epochDurable(n, st.Epoch)
		n.epoch = max(n.epoch, st.Epoch)
	}
	if len(st.Append) > 0 && m.app.Epoch < n.epoch {
		n.s.fatalf("node %d at epoch %d accepted entries from a main of epoch %d (invariant 7)", n.id, n.epoch, m.app.Epoch)
	}
	if st.Truncate > 0 {
		if st.Truncate <= n.commit {
			n.s.fatalf("node %d truncates from %d at or below its commit point %d (invariant 5)", n.id, st.Truncate, n.commit)
		}
		n.log.Truncate(st.Truncate)
	}
	if err := n.log.Append(st.Append...); err != nil {
		n.s.fatalf("node %d: %v", n.id, err)
	}
	if st.Commit != 0 {
		n.setDurableCommit(st.Commit)
		n.memCommit = st.Commit
		n.applyTo(n.commit)
	}
	if st.Ack.OK && st.Ack.Epoch == n.roleEpoch {
		n.heard, n.lastHeard = true, n.now()
	}
	ack := st.Ack
	n.s.send(&simMsg{kind: mAck, from: n.id, to: m.from, ack: &ack})
}

// onSeal is group.seal.
func (n *simNode) onSeal(m *simMsg) {
	reply := &simMsg{kind: mSealReply, from: n.id, to: m.from, attempt: m.attempt}
	req := m.seal
	switch {
	case n.role == roleMainSim:
		reply.sealErr = 1 // 409, which the controller takes for "still hears"
	case req.Auto && n.heard && n.now().Sub(n.lastHeard) < simDownAfter:
		reply.sealErr = 1
	default:
		if req.Epoch > n.epoch {
			n.s.chk.epochDurable(n, req.Epoch)
			n.epoch = req.Epoch
		}
		if n.f == nil {
			n.f = n.follower()
		}
		n.f.Seal(req.Epoch)
		n.sealed = req.Epoch
		le, ls := n.f.Last()
		reply.reply = &command.SealReply{Node: n.id, LastEpoch: le, LastSeq: ls, CommitSeq: n.f.Commit(), CopyID: n.copyIDString()}
		n.s.chk.sealed(n, req.Epoch)
	}
	n.s.send(reply)
}

// crash: the process dies; a main's log loses what was not fsynced.
func (n *simNode) crash() {
	n.s.tracef("node %d crashes (role %d, persisted %d, last %d)", n.id, n.role, n.persisted, n.log.Last())
	if n.role == roleMainSim {
		n.log.Truncate(n.persisted + 1)
		n.stepDown()
	}
	n.up = false
	n.role, n.f, n.main = roleNoneSim, nil, nil
	n.stopMainState()
	n.newEpoch = 0
}

// restart: a new process (instance) with the disk it had; it joins before anything else.
func (n *simNode) restart() {
	n.s.tracef("node %d restarts", n.id)
	n.up, n.joined, n.instance = true, false, n.instance+1
	n.incarnation++
	n.dir, n.dirIdx, n.fencedBy, n.sealed, n.heard = nil, 0, 0, 0, false
	n.memCommit = n.commit
	n.nextHB = time.Time{}
}

// loseDisk: the data directory is gone: an empty copy with a new ID, and the incarnation
// counter restarts.
func (n *simNode) loseDisk() {
	n.s.tracef("node %d loses its disk", n.id)
	n.wipe()
	n.incarnation = 0
	n.persisted = 0
}
