package location

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The controller leader of the simulation: one simTerm per stretch of leadership, holding
// the real leaderTerm. Its reconcile loop and its promotion attempts are written as state
// machines that wait for their proposals to commit, where the real controller blocks a
// goroutine; the decisions are the real functions.

type simTerm struct {
	ctrl      uint16
	clock     *simClock
	id        int
	lt        *leaderTerm
	nextRound time.Time
	round     []dirCommand // the rest of the current reconcile round, applied one by one
	roundBusy bool
	attempts  []*simAttempt
}

func (t *simTerm) now(s *sim) time.Time { return t.clock.at(s.now) }

// directory is directoryFor: the FSM's state with this leader's view of node liveness.
func (t *simTerm) directory(s *sim) command.Directory {
	now := t.now(s)
	return s.fsm.st.directory(func(n nodeRecord) (string, uint64) { return t.lt.nodeState(n, now, simDownAfter) })
}

// tick runs the reconcile loop (every simRoundTick of the leader's clock, one round at a
// time) and the attempts' timers.
func (t *simTerm) tick(s *sim) {
	for _, a := range slices.Clone(t.attempts) {
		a.tick(s)
	}
	if t != s.term || t.roundBusy || t.now(s).Before(t.nextRound) {
		return
	}
	t.nextRound = t.now(s).Add(simRoundTick)
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
	if len(t.round) == 0 || t != s.term {
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
		seal: &command.SealRequest{Server: a.g.Server, Epoch: a.epoch, From: a.g.Main, Auto: a.auto}})
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
	if a.t != s.term {
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
	if a.phase != 1 || a.t != s.term || a.answered[m.from] {
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
	cmd, chosen := decidePromotion(&a.g, a.epoch, a.replies, mainFenced(a.t.lt, &a.g, a.replies, a.t.now(s), simDownAfter), a.passOver, nil)
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
		}
		a.finish(s, err == nil)
	})
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// ctrlReceive handles a message to a controller: only the leader answers.
func (s *sim) ctrlReceive(m *simMsg) {
	t := s.term
	if t == nil || t.ctrl != m.to {
		return // a follower answers 421; the node tries again later
	}
	switch m.kind {
	case mJoin:
		req := *m.join
		s.propose(t, joinNode{ID: req.ID, Addr: "sim", Location: "sim", Instance: req.Instance, Incarnation: req.Incarnation}, func(err error) {
			if err != nil || t != s.term {
				return
			}
			t.lt.noteJoin(req.ID, t.now(s))
			var dir *command.GroupInfo
			if g := s.group(); g != nil {
				c := cloneGroup(g)
				dir = &c
			}
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: req.ID, dir: dir, dirIdx: s.index, join: &req,
				sealedAt: s.fsm.st.Nodes[req.ID].Incarnation})
		})
	case mHeartbeat:
		hb := *m.hb
		rec, ok := s.fsm.st.Nodes[hb.Node]
		if !ok || rec.Instance != hb.Instance || rec.Incarnation != hb.Incarnation {
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: hb.Node, rejoin: true})
			return
		}
		t.lt.noteHeartbeat(hb, t.now(s))
		if g := s.group(); g != nil {
			c := cloneGroup(g)
			s.send(&simMsg{kind: mHBReply, from: t.ctrl, to: hb.Node, dir: &c, dirIdx: s.index})
		}
	case mSealReply:
		if m.attempt != nil && m.attempt.t == t {
			m.attempt.sealAnswer(s, m)
		}
	}
}
