package location

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sibylhq/sibyl/command"
)

// The controller leader of a location of the simulation: one simTerm per stretch of
// leadership, holding the real leaderTerm. Its reconcile loop and its promotion attempts are written as state
// machines that wait for their proposals to commit, where the real controller blocks a
// goroutine; the decisions are the real functions.

type simTerm struct {
	ctrl      uint16
	loc       *simLoc
	clock     *simClock
	id        int
	lt        *leaderTerm
	nextRound time.Time
	round     []dirCommand // the rest of the current reconcile round, applied one by one
	roundBusy bool
	attempts  []*simAttempt
}

func (t *simTerm) now(s *sim) time.Time { return t.clock.at(s.now) }

// directory is directoryFor: its location's FSM state with this leader's view of node
// liveness, stamped with the location's name.
func (t *simTerm) directory(s *sim) command.Directory {
	now := t.now(s)
	d := t.loc.fsm.st.directory(func(n nodeRecord) (string, uint64) { return t.lt.nodeState(n, now, simDownAfter) })
	d.Location = t.loc.name
	for i := range d.Groups {
		d.Groups[i].Home = t.loc.name
	}
	return d
}

// current: t is its location's term still.
func (t *simTerm) current() bool { return t == t.loc.term }

// tick runs the reconcile loop (every simRoundTick of the leader's clock, one round at a
// time) and the attempts' timers.
func (t *simTerm) tick(s *sim) {
	for _, a := range slices.Clone(t.attempts) {
		a.tick(s)
	}
	if !t.current() || t.roundBusy || t.now(s).Before(t.nextRound) {
		return
	}
	t.nextRound = t.now(s).Add(simRoundTick)
	if t.loc.group() == nil {
		return // a location that does not home the simulated group plans nothing for it
	}
	d := t.directory(s)
	reports := t.lt.snapshotReports()
	// c.reconcile: planPromotions, then planRound's commands one by one.
	for _, a := range planPromotionActions(t.lt, d, reports, t.now(s), simDownAfter) {
		if a.group.Server != simGroup {
			continue
		}
		if a.abandon {
			s.tracef("term %d abandons the open attempt %d", t.id, a.group.Promotion.Epoch)
			t.round = append(t.round, abandonPromotion{Server: a.group.Server, Epoch: a.group.Promotion.Epoch})
			continue
		}
		if a.refresh {
			s.tracef("term %d gives the stranded main %d a fresh epoch", t.id, a.group.Main)
			t.round = append(t.round, refreshMain{Server: a.group.Server, Epoch: a.group.Epoch, Main: a.group.Main})
			continue
		}
		if a.start {
			var passOver uint16
			if a.overdue > 0 {
				passOver = a.group.Main
			}
			t.startAttempt(s, a.group, a.auto, passOver)
		}
	}
	for _, c := range planRound(d, reports, t.lt.copyClock(t.now(s), simCopyTO)) {
		if commandServer(c) == simGroup {
			t.round = append(t.round, c)
		}
	}
	t.nextCommand(s)
}

// nextCommand proposes the round's next command once the previous one committed.
func (t *simTerm) nextCommand(s *sim) {
	if len(t.round) == 0 || !t.current() {
		t.roundBusy = false
		t.round = nil
		return
	}
	t.roundBusy = true
	c := t.round[0]
	t.round = t.round[1:]
	s.propose(t, c, func(err error) {
		if err == errSimNotLeader {
			t.round, t.roundBusy = nil, false
			return
		}
		t.nextCommand(s)
	})
}

func commandServer(c dirCommand) uint16 {
	switch v := c.(type) {
	case addLearner:
		return v.Server
	case proposeVoter:
		return v.Server
	case activate:
		return v.Server
	case demote:
		return v.Server
	case reviveStale:
		return v.Server
	case abandonPromotion:
		return v.Server
	case refreshMain:
		return v.Server
	}
	return 0
}

// simAttempt is Controller.promote for one attempt.
type simAttempt struct {
	t        *simTerm
	g        command.GroupInfo
	auto     bool
	passOver uint16 // a main whose barrier was overdue (decidePromotion)
	epoch    uint64
	phase    int // 0: beginPromotion proposed; 1: sealing; 2: outcome proposed; 3: over
	voters   []uint16
	replies  map[uint16]command.SealReply
	answered map[uint16]bool
	retryAt  map[uint16]time.Time
	deadline time.Time
	covered  bool
	start    time.Duration
}

func (t *simTerm) startAttempt(s *sim, g command.GroupInfo, auto bool, passOver uint16) {
	a := &simAttempt{t: t, g: g, auto: auto, passOver: passOver, epoch: g.NextEpoch(), replies: map[uint16]command.SealReply{},
		answered: map[uint16]bool{}, retryAt: map[uint16]time.Time{}, start: s.now}
	t.attempts = append(t.attempts, a)
	s.tracef("term %d starts attempt %d (auto %v) to replace main %d", t.id, a.epoch, auto, g.Main)
	s.propose(t, beginPromotion{Server: g.Server, Epoch: a.epoch, From: g.Main}, func(err error) {
		if err != nil {
			a.finish(s, false)
			return
		}
		a.phase = 1
		a.deadline = t.now(s).Add(2 * simDownAfter)
		a.voters = g.Voters()
		for _, v := range a.voters {
			a.sendSeal(s, v)
		}
	})
}

func (a *simAttempt) sendSeal(s *sim, v uint16) {
	// A call that gets no answer within down-after/2 is made again (Controller.seal).
	a.retryAt[v] = a.t.now(s).Add(simDownAfter / 2)
	s.send(&simMsg{kind: mSeal, from: a.t.ctrl, to: v, attempt: a,
		seal: &command.SealRequest{Server: a.g.Server, Epoch: a.epoch, From: a.g.Main, Auto: a.auto, Home: a.t.loc.name,
			HomeGen: a.g.HomeGen, RehomedFrom: a.g.RehomedFrom}})
}

// finish is the deferred promo.finish of Controller.promote.
func (a *simAttempt) finish(s *sim, ok bool) {
	if a.phase == 3 {
		return
	}
	a.phase = 3
	a.t.lt.promo.finish(a.g.Server, ok, a.t.now(s), simDownAfter)
	a.t.attempts = slices.DeleteFunc(a.t.attempts, func(x *simAttempt) bool { return x == a })
}

// tick ends the attempt's term with it, retries seals refused because the sibling still
// hears the main or not answered at all, and ends the sealing at its deadline.
func (a *simAttempt) tick(s *sim) {
	if !a.t.current() {
		a.finish(s, false) // the goroutine's next proposal fails: not the leader
		return
	}
	if a.phase != 1 {
		return
	}
	now := a.t.now(s)
	for _, v := range a.voters {
		if at, ok := a.retryAt[v]; ok && !now.Before(at) && !a.answered[v] {
			delete(a.retryAt, v)
			if now.Before(a.deadline) {
				a.sendSeal(s, v)
			} else {
				a.answered[v] = true
			}
		}
	}
	if !now.Before(a.deadline) || len(a.answered) == len(a.voters) {
		a.decide(s)
	}
}

// sealAnswer is one answer of a voter to the attempt's seal.
func (a *simAttempt) sealAnswer(s *sim, m *simMsg) {
	if a.phase != 1 || !a.t.current() || a.answered[m.from] {
		return
	}
	switch m.sealErr {
	case 1: // 409: it still hears the main; ask again in down-after/10 until the deadline
		a.retryAt[m.from] = a.t.now(s).Add(simDownAfter / 10)
		return
	case 2:
		a.answered[m.from] = true
	default:
		a.answered[m.from] = true
		r := *m.reply
		r.Node = m.from
		counted, complete := addSeal(&a.g, a.replies, r, len(a.voters))
		if s.mutation == "amnesiac-seal" && !counted {
			a.replies[r.Node], counted = r, true
			complete = sealsCover(&a.g, a.replies) && len(a.replies) == len(a.voters)
		}
		if counted && !a.covered && sealsCover(&a.g, a.replies) {
			a.covered = true
			s.chk.sealQuorum(a)
		}
		if complete {
			a.decide(s)
			return
		}
	}
	if len(a.answered) == len(a.voters) {
		a.decide(s)
	}
}

// decide commits the attempt's outcome (decidePromotion).
func (a *simAttempt) decide(s *sim) {
	if a.phase != 1 {
		return
	}
	a.phase = 2
	cmd, chosen := decidePromotion(&a.g, a.epoch, a.replies, mainFenced(a.t.lt, &a.g, a.replies, a.t.now(s), simDownAfter), a.passOver, s.atHome(a.t.loc))
	if c, ok := cmd.(choosePromotion); ok && s.mutation == "lowest-last" {
		low := chosen
		for _, n := range sortedKeys(a.replies) {
			r := a.replies[n]
			if r.LastEpoch < low.LastEpoch || (r.LastEpoch == low.LastEpoch && r.LastSeq < low.LastSeq) {
				low = r
			}
		}
		c.Main = low.Node
		cmd = c
	}
	s.tracef("attempt %d decides %s %+v from %v", a.epoch, cmd.kind(), cmd, a.replies)
	if c, ok := cmd.(choosePromotion); ok {
		s.chk.choosing(a, c)
	}
	s.propose(a.t, cmd, func(err error) {
		if _, abandon := cmd.(abandonPromotion); abandon {
			if err == nil {
				s.stats.abandoned++
			}
			a.finish(s, false)
			return
		}
		if err == nil {
			s.stats.promotions++
			if c, ok := cmd.(choosePromotion); ok && len(s.locs) > 1 && s.node(c.Main).loc != a.t.loc.idx {
				s.stats.awayPromotions++
			}
		}
		a.finish(s, err == nil)
	})
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// ctrlReceive handles a message to a controller: only its location's leader answers.
func (s *sim) ctrlReceive(m *simMsg) {
	l := s.locs[s.locOf(m.to)]
	if s.rehomeReceive(l, m) {
		return
	}
	t := l.term
	if t == nil || t.ctrl != m.to {
		return // a follower answers 421; the node tries again later
	}
	switch m.kind {
	case mJoin:
		req := *m.join
		from := s.node(req.ID)
		join := joinNode{ID: req.ID, Addr: "sim", Location: s.locs[from.loc].name, Instance: req.Instance,
			Incarnation: req.Incarnation, Guest: from.loc != l.idx, Wiped: req.Wiped}
		s.propose(t, join, func(err error) {
			if err != nil || !t.current() {
				return
			}
			t.lt.noteJoin(req.ID, t.now(s))
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: req.ID, dir: s.record(l), dirIdx: l.index, join: &req,
				sealedAt: l.fsm.st.Nodes[req.ID].Incarnation})
		})
	case mHeartbeat:
		hb := *m.hb
		rec, ok := l.fsm.st.Nodes[hb.Node]
		if !ok || rec.Instance != hb.Instance || rec.Incarnation != hb.Incarnation {
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: hb.Node, rejoin: true})
			return
		}
		t.lt.noteHeartbeat(hb, t.now(s))
		if len(s.locs) > 1 {
			s.noteMovedHomes(t, hb)
		}
		// The reply is the location's directory, which lists the group only at its home
		// (with one location, as before locations, no reply until the group exists).
		if rec := s.record(l); rec != nil || len(s.locs) > 1 {
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: hb.Node, dir: rec, dirIdx: l.index})
		}
	case mSealReply:
		if m.attempt != nil && m.attempt.t == t {
			m.attempt.sealAnswer(s, m)
		}
	}
}

// proposal is a command submitted to a location's raft stand-in.
type proposal struct {
	cmd      dirCommand
	term     *simTerm
	commitAt time.Duration
	done     bool
	err      error
	then     func(err error) // called when it commits or fails (nil: nothing)
}

var errSimNotLeader = fmt.Errorf("not the leader")

// propose submits cmd for the leader of term t; it commits 0.5-3 ms later unless the term
// ends first.
func (s *sim) propose(t *simTerm, cmd dirCommand, then func(error)) *proposal {
	p := &proposal{cmd: cmd, term: t, commitAt: s.now + time.Duration(500+s.rng.Intn(2500))*time.Microsecond, then: then}
	if t != t.loc.term {
		p.done, p.err = true, errSimNotLeader
		if then != nil {
			then(p.err)
		}
		return p
	}
	t.loc.inflight = append(t.loc.inflight, p)
	return p
}

// commitDue commits location l's in-flight proposals whose time has come, in log order.
func (s *sim) commitDue(l *simLoc) {
	for len(l.inflight) > 0 && l.inflight[0].commitAt <= s.now {
		p := l.inflight[0]
		l.inflight = l.inflight[1:]
		s.apply(l, p)
	}
}

// apply runs p's command through location l's real FSM; the home's changes of the
// simulated group are checked and pushed to the nodes.
func (s *sim) apply(l *simLoc, p *proposal) {
	data, err := encodeCommand(p.cmd)
	if err != nil {
		s.fatalf("encode %T: %v", p.cmd, err)
	}
	var before command.GroupInfo
	had := l.group() != nil
	s.chk.repeatJoin = false
	if j, ok := p.cmd.(joinNode); ok {
		rec, known := l.fsm.st.Nodes[j.ID]
		s.chk.repeatJoin = known && rec.Instance == j.Instance
	}
	if had {
		before = cloneGroup(l.group())
	}
	l.index++
	res := l.fsm.Apply(&raft.Log{Index: l.index, Data: data}).(applyResult)
	p.done, p.err = true, res.Err
	if _, ok := p.cmd.(beginRehome); ok && res.Err == nil {
		s.tracef("%s takes the group over from %s: %s", l.name, s.home.name, groupString(l.group()))
		s.chk.rehomed(l)
		s.home = l
	}
	if res.Err == nil && (had || l.group() != nil) {
		s.tracef("%s committed %s %+v: %s", l.name, p.cmd.kind(), p.cmd, groupString(l.group()))
		if l.group() != nil {
			s.chk.directoryChanged(l, &before, p.cmd)
		}
		s.broadcastDir(l)
	}
	if p.then != nil {
		p.then(res.Err)
	}
}

// broadcastDir answers the nodes' long polls of location l with its new directory.
func (s *sim) broadcastDir(l *simLoc) {
	if l.term == nil || (l.group() == nil && len(s.locs) == 1) {
		return
	}
	rec := s.record(l)
	for _, nd := range s.nodes {
		s.send(&simMsg{kind: mDir, from: l.term.ctrl, to: nd.id, dir: rec, dirIdx: l.index})
	}
}

// endTerm ends location l's current term, if any, committing a prefix of its in-flight
// proposals and dropping the rest, as raft does with an old leader's uncommitted tail.
func (s *sim) endTerm(l *simLoc) {
	if l.term == nil {
		return
	}
	keep := s.rng.Intn(len(l.inflight) + 1)
	inflight := l.inflight
	l.inflight = nil
	for _, p := range inflight[:keep] {
		s.apply(l, p)
	}
	l.term = nil // what the old term's callbacks do now is refused
	for _, p := range inflight[keep:] {
		p.done, p.err = true, errSimNotLeader
		if p.then != nil {
			p.then(p.err)
		}
	}
	s.tracef("%s leader change: %d of %d in-flight proposals committed", l.name, keep, len(inflight))
	s.stats.leaderChanges++
}

// elect ends location l's current term, if any, and starts a term at its controller i;
// with i < 0 the location has no leader for 5-50 ms. The new leader's barrier is implied:
// it starts with everything committed applied.
func (s *sim) elect(l *simLoc, i int) {
	s.endTerm(l)
	if i < 0 {
		l.electAt = s.now + time.Duration(5+s.rng.Intn(45))*time.Millisecond
		return
	}
	s.terms++
	ctrl := ctrlID(l.idx, i)
	l.term = &simTerm{ctrl: ctrl, loc: l, clock: &l.ctrlClock[i], id: s.terms}
	l.term.lt = newLeaderTerm(l.term.clock.at(s.now))
	close(l.term.lt.ready)
	l.term.nextRound = l.term.now(s)
	s.tracef("controller %d leads %s (term %d)", ctrl, l.name, s.terms)
}
