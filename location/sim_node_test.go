package location

import (
	"fmt"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// simNode is a node process holding a copy of the simulated group. Its copy's decisions
// (roles, epochs, commit points, seals) are node/'s own: the same core.Group that node/
// drives, here driven with an in-memory log and store in place of files and sockets.

type simNode struct {
	s     *sim
	id    uint16
	loc   int // its location's index
	clock simClock
	up    bool
	// process
	instance int
	adopted  int    // the instance that adopted a recorded incarnation above its own
	joined   []bool // by location: joined its controllers (its own first, then as a guest)
	// knows, by location: a guest location the node joined once and recorded
	// (locations.json): after a restart it joins it at once, without its own location
	knows  []bool
	gen    uint64
	nextHB time.Time
	// by location: when its controllers last answered (node.link.heard), the group's record
	// in its directory (nil: not listed) and that directory's index
	heard   []time.Time
	dirs    []*command.GroupInfo
	dirIdxs []uint64
	dir     *command.GroupInfo // the record the node follows (node.mergeLocked)
	// disk: the copy, the home its seals promised (homes.json) and the highest config
	// version it followed (configs.json), sim_rehome_test.go
	home        simHome
	config      uint64
	log         *sibling.MemLog
	logWrites   uint64           // raised by every change of the log (checkCopies skips an unchanged one)
	store       store.GroupStore // the committed layer (sim_state_test.go)
	applied     uint64
	epoch       uint64 // durable epoch
	commit      uint64 // durable commit point
	copyID      int
	incarnation uint64
	// memory
	c         *core.Group
	persisted uint64               // main: its own log is durable up to here
	ov        *node.Overlay        // main: the pending layer
	tickets   map[string]simTicket // main: ticket deadlines
}

func newSimNode(s *sim, id uint16) *simNode {
	n := &simNode{s: s, id: id, clock: s.newClock(), log: sibling.NewMemLog(), store: newSimStore(), copyID: 1, incarnation: 1, instance: 1,
		joined: make([]bool, len(s.locs)), knows: make([]bool, len(s.locs))}
	n.c = n.newCore()
	n.forgetDirectories()
	return n
}

// forgetDirectories: a new process knows no location's directory.
func (n *simNode) forgetDirectories() {
	n.heard, n.dirs, n.dirIdxs = make([]time.Time, len(n.s.locs)), make([]*command.GroupInfo, len(n.s.locs)), make([]uint64, len(n.s.locs))
	n.dir = nil
}

// newCore is the process's copy state as a start finds it: no role, the durable epoch
// and commit point. Across locations the replication window is 4 times larger: a WAN
// round trip is about 3 times a local one, and a copy far behind in another location
// would otherwise catch up so slowly that every new main's barrier waits on it past its
// deadline, promotion after promotion.
func (n *simNode) newCore() *core.Group {
	window := 4
	if len(n.s.locs) > 1 {
		window = 16
	}
	return core.New(core.Config{Group: simGroup, Self: n.id, MaxBytes: 64, Window: window, DownAfter: simDownAfter}, n.epoch, n.commit)
}

func (n *simNode) now() time.Time { return n.clock.at(n.s.now) }

func (n *simNode) copyIDString() string { return fmt.Sprintf("c%d.%d", n.id, n.copyID) }

func (n *simNode) String() string {
	le, _ := n.log.EpochAt(n.log.Last())
	return fmt.Sprintf("up=%v joined=%v role=%s roleEpoch=%d epoch=%d last=(%d,%d) commit=%d mem=%d persisted=%d copy=%s fencedBy=%d dirIdxs=%v home=%s config=%d",
		n.up, n.joined, n.c.Role(), n.c.Epoch(), n.epoch, le, n.log.Last(), n.commit, n.c.Commit(), n.persisted, n.copyIDString(), n.c.FencedBy(), n.dirIdxs,
		n.home, n.config)
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

// disk is the copy's durable state as the core reads it when it takes a role.
func (n *simNode) disk() (core.Disk, error) {
	last := n.log.Last()
	le, _ := n.log.EpochAt(last)
	return core.Disk{Epoch: n.epoch, LastEpoch: le, LastSeq: last, Commit: n.commit, History: historyOf(n.log), Log: n.log}, nil
}

// sendJoin joins location l's controller leader (as a guest in any location but the
// node's own).
func (n *simNode) sendJoin(l int) {
	t := n.s.locs[l].term
	if t == nil {
		return
	}
	n.s.send(&simMsg{kind: mJoin, from: n.id, to: t.ctrl,
		join: &command.JoinRequest{ID: n.id, Location: n.s.locs[n.loc].name, Instance: fmt.Sprintf("n%d-%d", n.id, n.instance),
			Incarnation: n.incarnation, Wiped: n.adopted == n.instance && n.s.mutation != "guest-join-not-wiped"}})
}

// tick: the node's heartbeat timer (every down-after/4 of its clock): a heartbeat to every
// location's controller leader (a join first), and the main's replication heartbeats. A
// node finds the other locations through its own (node.discover) once it joined it, but
// joins those it recorded before at once (node.run).
func (n *simNode) tick() {
	if !n.up {
		return
	}
	if n.c.Role() == core.Main {
		n.expireTickets()
		if n.s.rng.Intn(3) == 0 {
			n.fsync() // the persist loop: a group commit about every 3 ms
		}
	}
	if n.now().Before(n.nextHB) {
		return
	}
	n.nextHB = n.now().Add(simDownAfter / 4)
	for i := range n.s.locs {
		l := (n.loc + i) % len(n.s.locs) // its own location first
		t := n.s.locs[l].term
		switch {
		case l != n.loc && !n.joined[n.loc] && !n.knows[l]:
		case !n.joined[l]:
			n.sendJoin(l)
		case t != nil:
			n.gen++
			n.s.send(&simMsg{kind: mHeartbeat, from: n.id, to: t.ctrl, hb: &command.Heartbeat{Node: n.id,
				Instance: fmt.Sprintf("n%d-%d", n.id, n.instance), Incarnation: n.incarnation, Generation: n.gen,
				Groups: []command.GroupReport{n.report()}}})
		}
	}
	if n.c.Role() == core.Main {
		n.heartbeats()
	}
}

// report is group.report: the core's line, with the copy's own fields.
func (n *simNode) report() command.GroupReport {
	r := n.c.Report(n.now(), func() (uint64, uint64) {
		last := n.log.Last()
		le, _ := n.log.EpochAt(last)
		return le, last
	})
	r.Applied, r.CopyID = n.c.Commit(), n.copyIDString()
	if n.home.recorded {
		r.Home, r.HomeGen = n.home.loc, n.home.gen
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
		l := n.s.locOf(m.from)
		if m.rejoin {
			n.joined[l] = false
			return
		}
		if m.join != nil {
			if m.join.Instance != fmt.Sprintf("n%d-%d", n.id, n.instance) {
				return // an answer to an earlier process
			}
			n.joined[l] = true
			n.knows[l] = l != n.loc
			// adoptIncarnation: the recorded incarnation when it is above the node's own;
			// the other locations then refuse its heartbeats and it joins them again,
			// saying that it adopted one (JoinRequest.Wiped)
			if m.sealedAt > n.incarnation {
				n.incarnation, n.adopted = m.sealedAt, n.instance
			}
		}
		n.applyDirectory(l, m)
	case mSeal:
		n.onSeal(m)
	case mView:
		v := n.view()
		n.s.send(&simMsg{kind: mViewReply, from: n.id, to: m.from, rehome: m.rehome, view: &v})
	}
}

// applyDirectory is node.applyDirectory for the group: location l's directory (m.dir its
// record of the group, nil when l does not list it) is kept, and the node follows the
// group from l when l's is the record the merge of every location's directory chooses.
func (n *simNode) applyDirectory(l int, m *simMsg) {
	if !n.joined[l] {
		return
	}
	n.heard[l] = n.now()
	if m.dirIdx <= n.dirIdxs[l] {
		return
	}
	n.dirs[l], n.dirIdxs[l] = m.dir, m.dirIdx
	from, rec := n.merged()
	n.dir = rec
	if from == l {
		n.follow()
	}
}

// merged is node.mergeLocked's choice of the group's record: from the directory of the
// highest home generation that lists it (of two of one generation, the first location by
// name), never from one older than the home the copy recorded. It returns that location
// (-1: none).
func (n *simNode) merged() (int, *command.GroupInfo) {
	best := -1
	for l, d := range n.dirs {
		if d == nil || (n.home.recorded && n.home.gen > d.HomeGen) {
			continue
		}
		if best < 0 || d.HomeGen > n.dirs[best].HomeGen {
			best = l
		}
	}
	if best < 0 {
		return -1, nil
	}
	return best, n.dirs[best]
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
	if err := n.c.Follow(gi, isSibling, n.disk, n.now()); err != nil {
		n.s.tracef("node %d: %v", n.id, err)
	}
	if n.c.Role() == core.Main {
		n.config = max(n.config, quorumVersion(gi))
	}
	n.drain()
}

// drain is group.drain: it carries out what the core decided, and checks it.
func (n *simNode) drain() {
	rd := n.c.Ready()
	for _, rc := range rd.Roles {
		if rc.Violation != nil {
			n.s.fatalf("node %d: invariant violation reported by the follower: %v", n.id, rc.Violation)
		}
		if rc.From == core.Main {
			n.s.tracef("node %d steps down as main of %d", n.id, rc.Epoch)
			n.stopMainState()
			n.s.chk.steppedDown(n)
		}
		switch rc.To {
		case core.Main:
			n.persisted = rc.Disk.LastSeq
			n.startMainState()
			n.s.chk.becameMain(n, rc.Epoch)
			n.s.tracef("node %d serves as main of epoch %d (last (%d,%d), commit %d, barrier %v)", n.id, rc.Epoch,
				rc.Disk.LastEpoch, rc.Disk.LastSeq, n.commit, rc.Barrier)
		case core.Sibling:
			n.s.tracef("node %d follows the main of epoch %d", n.id, rc.Epoch)
		}
	}
	for _, p := range rd.Entries {
		n.logged(p)
	}
	if rd.CommitTo != 0 {
		if rd.CommitTo < rd.CommitFrom {
			n.s.fatalf("node %d: main's commit point went back from %d to %d (invariant 5)", n.id, rd.CommitFrom, rd.CommitTo)
		}
		n.s.chk.committed(n, rd.CommitFrom, rd.CommitTo)
	}
	if n.c.Role() == core.Main {
		n.s.chk.resolve(n)
		n.pump()
	}
}

// retireStale: the copy was demoted to stale; it is wiped and rebuilt (the simulation
// rebuilds it by replication from seq 1 rather than from a snapshot).
func (n *simNode) retireStale(staleID string) {
	if n.c.Role() == core.Sibling {
		n.c.Stop(nil)
		n.drain()
	}
	if n.c.Role() == core.Main || (staleID != "" && staleID != n.copyIDString()) || (staleID == "" && n.log.Last() == 0) {
		return
	}
	n.s.tracef("node %d wipes its stale copy %s", n.id, n.copyIDString())
	n.wipe()
}

func (n *simNode) wipe() {
	n.log, n.epoch, n.commit, n.copyID = sibling.NewMemLog(), 0, 0, n.copyID+1
	n.logWrites++
	n.store, n.applied = newSimStore(), 0
	n.c.StartOver()
	n.drain()
	n.s.chk.wiped(n)
}

// fsync is the persist loop's write: the main's log is durable to its end, with its new
// epoch and the commit point applied.
func (n *simNode) fsync() {
	if n.c.Role() != core.Main {
		return
	}
	commit := n.c.Commit()
	e := n.c.NewEpoch()
	if e != 0 {
		n.s.chk.epochDurable(n, max(n.epoch, e))
		n.epoch = max(n.epoch, e)
	}
	n.setDurableCommit(commit)
	n.applyTo(n.commit)
	n.persisted = n.log.Last()
	n.c.Persisted(e, n.persisted)
	n.drain()
}

func (n *simNode) setDurableCommit(c uint64) {
	if c < n.commit {
		n.s.fatalf("node %d: durable commit point went back from %d to %d (invariant 5)", n.id, n.commit, c)
	}
	n.commit = c
}

func (n *simNode) pump() {
	m := n.c.Replication()
	for _, id := range sortedKeys(m.Peers()) {
		for {
			a, err := m.NextAppend(id)
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
	m := n.c.Replication()
	for _, id := range sortedKeys(m.Peers()) {
		if hb := m.Heartbeat(id); hb != nil {
			n.s.send(&simMsg{kind: mAppend, from: n.id, to: id, app: hb})
		}
	}
}

func (n *simNode) onAck(a *sibling.Ack) {
	n.c.HandleAcks([]*sibling.Ack{a}, n.now())
	n.drain()
}

// onAppend is handleAppends for one message: step, make durable, ack.
func (n *simNode) onAppend(m *simMsg) {
	authorize := func(epoch uint64, main uint16) bool {
		return n.dir != nil && n.dir.Epoch == epoch && n.dir.Main == main
	}
	writes, acks := n.c.Step([]*sibling.Append{m.app}, authorize, n.now())
	n.drain()
	for i := range writes {
		w := &writes[i]
		if w.Epoch != 0 {
			n.s.chk.epochDurable(n, w.Epoch)
			n.epoch = max(n.epoch, w.Epoch)
		}
		if len(w.Append) > 0 && m.app.Epoch < n.epoch {
			n.s.fatalf("node %d at epoch %d accepted entries from a main of epoch %d (invariant 7)", n.id, n.epoch, m.app.Epoch)
		}
		n.config = max(n.config, w.Config)
		if w.Truncate > 0 {
			if w.Truncate <= n.commit {
				n.s.fatalf("node %d truncates from %d at or below its commit point %d (invariant 5)", n.id, w.Truncate, n.commit)
			}
			n.log.Truncate(w.Truncate)
			n.logWrites++
		}
		n.logWrites++
		if err := n.log.Append(w.Append...); err != nil {
			n.s.fatalf("node %d: %v", n.id, err)
		}
		if w.Commit != 0 {
			n.setDurableCommit(w.Commit)
			n.applyTo(n.commit)
		}
		n.c.Written(w)
	}
	for _, a := range acks {
		n.s.send(&simMsg{kind: mAck, from: n.id, to: m.from, ack: a})
	}
}

// onSeal is group.seal.
func (n *simNode) onSeal(m *simMsg) {
	reply := &simMsg{kind: mSealReply, from: n.id, to: m.from, attempt: m.attempt, rehome: m.rehome}
	req := m.seal
	home, err := n.sealHome(req)
	if err != nil {
		n.s.tracef("node %d refuses the seal of epoch %d: %v", n.id, req.Epoch, err)
		reply.sealErr = 1 // 409: the controller asks again until its deadline
	} else if err := n.c.CheckSeal(req, true, n.now()); err != nil {
		n.s.tracef("node %d refuses the seal of epoch %d: %v (last heard %v ago)", n.id, req.Epoch, err, n.now().Sub(n.c.LastHeard()))
		reply.sealErr = 1 // 409, which the controller takes for "still hears"
	} else {
		if home != nil && n.s.mutation != "copy-no-home-record" {
			n.home = *home // durable before the epoch (node.homes.record)
		}
		promised := max(req.Epoch, n.epoch)
		if req.Epoch > n.epoch {
			n.s.chk.epochDurable(n, req.Epoch)
			n.epoch = req.Epoch
		}
		d, _ := n.disk()
		le, ls, commit := n.c.Seal(req.Epoch, d)
		reply.reply = &command.SealReply{Node: n.id, Epoch: promised, LastEpoch: le, LastSeq: ls, CommitSeq: commit, CopyID: n.copyIDString(),
			Config: n.config}
		n.s.tracef("node %d seals at epoch %d: last (%d,%d) commit %d", n.id, req.Epoch, le, ls, commit)
		n.s.chk.sealed(n, req.Epoch)
	}
	n.s.send(reply)
}

// crash: the process dies; a main's log loses what was not fsynced.
func (n *simNode) crash() {
	n.s.tracef("node %d crashes (role %s, persisted %d, last %d)", n.id, n.c.Role(), n.persisted, n.log.Last())
	if n.c.Role() == core.Main {
		n.log.Truncate(n.persisted + 1)
		n.logWrites++
		n.c.Stop(nil)
		n.drain()
	}
	n.up = false
	n.stopMainState()
	n.c = n.newCore() // what the process held in memory is gone
}

// restart: a new process (instance) with the disk it had; it joins before anything else.
func (n *simNode) restart() {
	n.s.tracef("node %d restarts", n.id)
	n.up, n.joined, n.instance = true, make([]bool, len(n.s.locs)), n.instance+1
	n.incarnation++
	n.forgetDirectories()
	n.c = n.newCore()
	n.nextHB = time.Time{}
}

// loseDisk: the data directory is gone: an empty copy with a new ID, and the incarnation
// counter restarts.
func (n *simNode) loseDisk() {
	n.s.tracef("node %d loses its disk", n.id)
	n.wipe()
	n.home, n.config = simHome{}, 0 // homes.json and configs.json went with the data directory
	n.knows = make([]bool, len(n.s.locs))
	n.incarnation = 0
	n.persisted = 0
}
