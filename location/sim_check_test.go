package location

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// The simulation's clients and its oracle: every invariant of docs/replication.md the
// simulation can observe is checked as the schedule runs and at its end.
//
//	1  unique main per epoch, in the directory and among the nodes acting as main; an
//	   epoch is never reused (the directory's epochs never go back)
//	2  log matching: an (epoch, seq) names one entry everywhere (never re-stamped), and
//	   copies holding it agree on everything before it
//	3  committed prefix stable: whatever a copy commits (acks, read indexes) agrees with
//	   the one committed history; no acknowledged write is lost
//	5  commit points never go back, in memory or on disk, and never truncate
//	7  durable epochs never go back (but for a lost disk); no entry of a lower epoch is
//	   accepted
//	8  after the seal quorum of epoch E completes, a main of an older epoch acknowledges
//	   only writes it assigned before, held by a sealed copy, and answers only reads that
//	   arrived before (seal intersection, invariant 4)
//	9  porcupine: the client history is linearizable (per resource)
//	6, 10-13: see sim_oracle_test.go and sim_tickets_test.go
//	14 configs: a main counts only committed configs; a choice is made from seals that
//	   cover every unactivated config; learners are never chosen
//	15 liveness: once every fault has healed, the group settles (a main acting in the
//	   directory's epoch commits everything it holds, with no config change or promotion
//	   open) within simSettleBound, and every client request is answered within
//	   simAnswerBound of the healing or of its sending, whichever is later (livenessCheck)

const openReturn = int64(1) << 62

type sealQuorum struct {
	epoch uint64
	at    time.Duration
	nodes []uint16
}

type simChecker struct {
	s *sim
	// clients (sim_client_test.go)
	clients []*simClient
	clock   int64
	ops     []porcupine.Operation
	writes  []pendingWrite
	reads   []pendingRead
	acked   []ackedWrite
	origins map[[2]uint64]origin // (epoch, seq) -> the request it was executed for
	keys    uint64
	nextV   uint64
	nextRID uint64
	beliefs []belief
	subs    []*simSub
	// the fold of the committed history (sim_oracle_test.go)
	ref           store.GroupStore
	refApplied    uint64
	hist          map[string][]refState
	version       map[string]uint64
	gone          map[string]bool
	rids          []string // the writers' resources, in order of creation
	allRIDs       []string // and the ticket resources
	ticketRID     string
	keySeq        map[string]uint64
	firstReply    map[string]*command.Reply
	committedKeys []string
	keyRID        map[string]string
	// replication
	entries  map[[2]uint64]string      // (epoch, seq) -> data: an entry's identity
	ledger   map[uint64]uint64         // seq -> epoch of the committed history
	mainOf   map[uint64]uint16         // epoch -> the node that acted as main
	dirMain  map[uint64]uint16         // epoch -> the directory's main
	configs  map[simConfigKey][]uint16 // committed config versions, by location
	checked  map[uint16]uint64         // node -> commit point checked against the ledger
	epochs   map[uint16]uint64         // node -> durable epoch last seen
	sealLog  map[[2]uint64][]uint64
	quorums  []sealQuorum
	choices  map[uint64]map[uint16]command.SealReply
	lostDisk map[uint16]bool
	genEpoch map[uint64]uint64 // home generation -> the highest epoch a record of it held
	// the highest home generation a rehome chose a main at, and where
	fencedGen uint64
	fencedBy  string
	// repeatJoin: the joinNode being applied is of an instance its location recorded before
	repeatJoin bool
	// logChecked: each node's logWrites when checkCopies last checked its log
	logChecked map[uint16]uint64
	maxEpoch   uint64
	// liveness: when every fault healed (0: not yet), and since when each client has
	// waited for the answer to its current request
	healedAt, settledAt, lastSettled time.Duration
	// backoff is what remained, when the faults healed, of the controller leader's
	// promotion backoff for the group: attempts before it ends are not expected.
	backoff time.Duration
	waiting map[*simClient]waitingSince
	// quiet: the clients start no new request (converge)
	quiet bool
}

type waitingSince struct {
	req   *command.Request
	since time.Duration
}

func newChecker(s *sim) *simChecker {
	c := &simChecker{s: s, origins: map[[2]uint64]origin{}, entries: map[[2]uint64]string{},
		ref: newSimStore(), hist: map[string][]refState{}, version: map[string]uint64{}, gone: map[string]bool{},
		keySeq: map[string]uint64{}, firstReply: map[string]*command.Reply{}, keyRID: map[string]string{},
		ledger: map[uint64]uint64{}, mainOf: map[uint64]uint16{}, dirMain: map[uint64]uint16{}, configs: map[simConfigKey][]uint16{},
		checked: map[uint16]uint64{}, epochs: map[uint16]uint64{}, sealLog: map[[2]uint64][]uint64{},
		choices: map[uint64]map[uint16]command.SealReply{}, lostDisk: map[uint16]bool{}, logChecked: map[uint16]uint64{}, waiting: map[*simClient]waitingSince{}}
	c.clients = newClients(s)
	for range simSubs {
		c.subs = append(c.subs, &simSub{})
	}
	return c
}

func epochsOf(l *sibling.MemLog) []uint64 {
	out := make([]uint64, l.Last()+1)
	for q := uint64(1); q <= l.Last(); q++ {
		out[q], _ = l.EpochAt(q)
	}
	return out
}

func entryData(l *sibling.MemLog, q uint64) (sibling.Entry, bool) {
	es, _ := l.Entries(q, q, 1<<20)
	if len(es) != 1 {
		return sibling.Entry{}, false
	}
	return es[0], true
}

// fencedCheck is invariant 8 (and 4) for an answer by a main of epoch e.
func (c *simChecker) fencedCheck(e uint64, what string, since time.Duration, seq uint64) {
	for _, q := range c.quorums {
		if q.epoch <= e {
			continue
		}
		if since > q.at {
			c.s.fatalf("%s by the main of epoch %d, which arrived after the seal quorum of epoch %d completed at %v (invariant 8)", what, e, q.epoch, q.at)
		}
		if seq == 0 {
			continue
		}
		held := false
		for _, nd := range q.nodes {
			l := c.sealLog[[2]uint64{q.epoch, uint64(nd)}]
			held = held || (uint64(len(l)) > seq && l[seq] == e)
		}
		if !held {
			c.s.fatalf("%s acknowledged after the seal quorum of epoch %d (%v), and no sealed copy held it (invariants 4, 8)", what, q.epoch, q.nodes)
		}
	}
}

// committed: main n's commit point moved from prev to now. A write takes effect when its
// entry commits, whichever main commits it (its client may never hear).
func (c *simChecker) committed(n *simNode, prev, now uint64) {
	for q := prev + 1; q <= now; q++ {
		e, ok := entryData(n.log, q)
		if !ok {
			c.s.fatalf("main %d committed seq %d beyond its log", n.id, q)
		}
		c.ledgerCheck(n, q, e.Epoch)
	}
}

func (c *simChecker) ledgerCheck(n *simNode, q, e uint64) {
	if le, ok := c.ledger[q]; ok && le != e {
		c.s.fatalf("node %d commits (%d,%d), but (%d,%d) was committed before (invariant 3)", n.id, e, q, le, q)
	}
	c.ledger[q] = e
	c.fold()
}

// entryWritten: a main wrote (e, seq); the pair must be new (never re-stamped).
func (c *simChecker) entryWritten(n *simNode, e, seq uint64, data string) {
	k := [2]uint64{e, seq}
	if old, ok := c.entries[k]; ok {
		c.s.fatalf("node %d writes (%d,%d) %q, which already names %q (invariants 1, 2)", n.id, e, seq, data, old)
	}
	c.entries[k] = data
}

func (c *simChecker) becameMain(n *simNode, e uint64) {
	if m, ok := c.mainOf[e]; ok && m != n.id {
		c.s.fatalf("node %d acts as main of epoch %d, which node %d acted as main of (invariant 1)", n.id, e, m)
	}
	c.mainOf[e] = n.id
	for _, set := range n.c.Replication().Quorum().Sets {
		c.configCheck(n, set)
	}
}

func (c *simChecker) configCheck(n *simNode, set []uint16) {
	for _, v := range c.configs {
		if slices.Equal(v, set) {
			return
		}
	}
	c.s.fatalf("main %d counts the voting set %v, which no committed config holds (invariant 14)", n.id, set)
}

func (c *simChecker) epochDurable(n *simNode, e uint64) {
	if e < n.epoch {
		c.s.fatalf("node %d's durable epoch would go back from %d to %d (invariant 7)", n.id, n.epoch, e)
	}
}

func (c *simChecker) sealed(n *simNode, epoch uint64) {
	c.sealLog[[2]uint64{epoch, uint64(n.id)}] = epochsOf(n.log)
}

func (c *simChecker) sealQuorum(a *simAttempt) {
	c.oldHomeSealed(a)
	c.sealQuorumAt(a.epoch, sortedKeys(a.replies))
}

// sealQuorumAt: the seals of nodes at epoch cover R of every config in use.
func (c *simChecker) sealQuorumAt(epoch uint64, nodes []uint16) {
	c.quorums = append(c.quorums, sealQuorum{epoch: epoch, at: c.s.now, nodes: nodes})
}

func (c *simChecker) choosing(a *simAttempt, cmd choosePromotion) { c.choosingAt(a.epoch, a.replies) }

// choosingAt: a main is chosen at epoch from the seals in replies.
func (c *simChecker) choosingAt(epoch uint64, replies map[uint16]command.SealReply) {
	c.choices[epoch] = replies
}

func (c *simChecker) wiped(n *simNode) {
	c.checked[n.id] = 0
	c.epochs[n.id] = 0
	c.lostDisk[n.id] = true
}

// mayLoseDisk: the fault model (docs/protocol.md §2, docs/replication.md case 14e): fewer than W of the copies
// that acknowledged a write lose their disks. One copy at a time, while every config has W >= 2.
func (c *simChecker) mayLoseDisk(n *simNode) bool {
	for _, l := range c.lostDisk {
		if l {
			return false
		}
	}
	g := c.s.group()
	if g == nil || len(g.Active.Voters) < 2 || (g.Pending != nil && len(g.Pending.Voters) < 2) {
		return false
	}
	return true
}

// simConfigKey is a config version committed at a location.
type simConfigKey struct {
	loc     int
	version uint64
}

// directoryChanged checks a command location l's FSM accepted against the state before it.
// Epochs are checked across the locations: one main per epoch whichever home chose it, and
// every epoch of a home in its generation's band (sim_rehome_test.go).
func (c *simChecker) directoryChanged(l *simLoc, before *command.GroupInfo, cmd dirCommand) {
	g := l.group()
	c.bandCheck(l, g, cmd)
	if g.Epoch < before.Epoch || g.NextEpoch() < before.NextEpoch() {
		c.s.fatalf("%s moved the group's epoch back: %s -> %s (invariant 1)", cmd.kind(), groupString(before), groupString(g))
	}
	if g.Main != 0 {
		if m, ok := c.dirMain[g.Epoch]; ok && m != g.Main {
			c.s.fatalf("%s made node %d main of epoch %d, which node %d was main of (invariant 1)", cmd.kind(), g.Main, g.Epoch, m)
		}
		c.dirMain[g.Epoch] = g.Main
	}
	if j, ok := cmd.(joinNode); ok && j.ID == g.Main && g.MainCopyID != "" && !c.repeatJoin {
		// A main that comes back without its copy (its data directory was wiped) holds
		// none of the group's entries: once its process knows (it adopted the incarnation a
		// controller recorded above its own), no join of it may keep it main (docs/replication.md
		// case 5D). (A wiped node that crashes again before its first join starts its next
		// life with a counter that looks like a restart's; the core then refuses to serve as
		// main with an empty copy while the group has voters, and the home replaces it.)
		// A join of an instance the location recorded before changes nothing: the check is
		// of the first, which a group a rehome took over later never saw (its copy IDs
		// keep the empty copy from counting: docs/locations.md "What is left").
		if nd := c.s.node(j.ID); nd.copyIDString() != g.MainCopyID && nd.adopted == nd.instance {
			c.s.fatalf("joinNode %+v kept node %d main of epoch %d, but its copy is %s, not the main's copy %s: its data directory was wiped (case 5D)",
				j, j.ID, g.Epoch, nd.copyIDString(), g.MainCopyID)
		}
	}
	c.configs[simConfigKey{l.idx, g.Active.Version}] = slices.Clone(g.Active.Voters)
	if g.Pending != nil {
		k := simConfigKey{l.idx, g.Pending.Version}
		if old, ok := c.configs[k]; ok && !slices.Equal(old, g.Pending.Voters) {
			c.s.fatalf("config version %d committed twice at %s: %v and %v (invariant 14)", g.Pending.Version, l.name, old, g.Pending.Voters)
		}
		c.configs[k] = slices.Clone(g.Pending.Voters)
	}
	if ch, ok := cmd.(choosePromotion); ok {
		replies := c.choices[ch.Epoch]
		if !sealsCover(before, replies) {
			c.s.fatalf("choosePromotion %d: the seals %v do not cover R of every unactivated config of %s (invariant 14)",
				ch.Epoch, sortedKeys(replies), groupString(before))
		}
		// A learner is a copy in no config in use. (An old main stays a voter of the active
		// config, as a syncing member, until the promotion's config is activated.)
		if !slices.Contains(before.Voters(), ch.Main) {
			c.s.fatalf("choosePromotion %d chose learner %d (invariant 14)", ch.Epoch, ch.Main)
		}
	}
	// A copy that lost its disk counts again once it votes with its new copy ID.
	for _, m := range g.Siblings {
		if nd := c.s.node(m.Node); m.State == command.SiblingVoting && m.CopyID == nd.copyIDString() {
			c.lostDisk[m.Node] = false
		}
	}
}

func (n *simNode) lostDisk() bool { return n.s.chk.lostDisk[n.id] }

// checkCopies runs after every step: entry identity and log matching, commit points
// against the committed history, durable epochs.
func (c *simChecker) checkCopies() {
	s := c.s
	for _, n := range s.nodes {
		if n.epoch < c.epochs[n.id] {
			s.fatalf("node %d's durable epoch went back from %d to %d (invariant 7)", n.id, c.epochs[n.id], n.epoch)
		}
		c.epochs[n.id] = n.epoch
		if n.commit > n.log.Last() {
			s.fatalf("node %d's commit point %d is beyond its log (%d) (invariant 5)", n.id, n.commit, n.log.Last())
		}
		c.noteCommitted(n)
		// Entries must be the ones their main wrote (never re-stamped). Only the tail can
		// have changed since the last step; checking the last few is enough with the rest
		// covered when they were appended, and a log that did not change since is skipped
		// (what a main wrote is recorded once: entryWritten).
		if c.logChecked[n.id] == n.logWrites {
			continue
		}
		c.logChecked[n.id] = n.logWrites
		for q := n.log.Last(); q >= 1 && q+8 > n.log.Last(); q-- {
			e, _ := entryData(n.log, q)
			if d, ok := c.entries[[2]uint64{e.Epoch, q}]; !ok || d != string(e.Data) {
				s.fatalf("node %d holds (%d,%d) %q, which its main wrote as %q (invariant 2)", n.id, e.Epoch, q, e.Data, d)
			}
		}
	}
}

// logMatching checks invariant 2 across every pair of copies.
func (c *simChecker) logMatching() {
	s := c.s
	for i, a := range s.nodes {
		for _, b := range s.nodes[i+1:] {
			match := false
			for q := min(a.log.Last(), b.log.Last()); q >= 1; q-- {
				ea, _ := a.log.EpochAt(q)
				eb, _ := b.log.EpochAt(q)
				if ea == eb {
					match = true
				} else if match {
					s.fatalf("log matching: nodes %d and %d agree at a later seq but differ at %d (%d vs %d) (invariant 2)", a.id, b.id, q, ea, eb)
				}
			}
		}
	}
}

// final: after quiescence, every acknowledged write is in the main's committed log, and the
// history is linearizable.
func (c *simChecker) final() {
	s := c.s
	c.logMatching()
	g := s.group()
	m := s.node(g.Main)
	for _, w := range c.acked {
		e, ok := entryData(m.log, w.seq)
		if !ok || e.Epoch != w.epoch || w.seq > m.c.Commit() {
			s.stats.lost++
			s.fatalf("acknowledged %s is not in the final committed log of main %d (invariant 3)", w.what, m.id)
		}
	}
	c.finalState(m)
	c.finalEvents(m)
	c.linearizable()
}

// linearizable checks the client history with porcupine (invariant 9).
func (c *simChecker) linearizable() {
	s := c.s
	var history []porcupine.Operation
	for _, op := range c.ops {
		if op.Return == -1 || op.Return == openReturn {
			continue // a read that never completed, or a write whose entry never committed
		}
		history = append(history, op)
	}
	s.stats.ops += len(history)
	switch porcupine.CheckOperationsTimeout(regModel, history, 20*time.Second) {
	case porcupine.Illegal:
		s.stats.nonLinear++
		var b strings.Builder
		for _, part := range regModel.Partition(history) {
			if porcupine.CheckOperations(regModel, part) {
				continue
			}
			for _, op := range part {
				fmt.Fprintf(&b, "\n  client %d %+v -> %+v [%d, %d]", op.ClientId, op.Input, op.Output, op.Call, op.Return)
			}
		}
		s.t.Log("the operations on the resources that fail:", b.String())
		s.fatalf("history of %d operations is not linearizable (invariant 9)", len(history))
	case porcupine.Unknown:
		s.fatalf("linearizability check of %d operations timed out", len(history))
	}
}

// Liveness bounds (docs/replication.md invariant 15), in simulated time from the moment every
// fault healed, after the promotion backoff the controller leader had then for the group
// (docs/replication.md case 7: automatic attempts back off exponentially, up to 64×down-after
// here). The rule asks for a main that commits within 3×down-after plus push time once
// faults heal; the nodes that were down restart at that moment and join again, a new
// attempt's seals may miss a node still joining, and a controller leader may first have to
// be elected, so the bounds leave room for that: schedules of TestSimulation settle well
// inside them (TestSimulation logs the slowest), while a group that stays without a
// working main, or a request that is never answered, exceeds them by far.
const (
	simSettleBound = 30 * simDownAfter
	simAnswerBound = 30 * simDownAfter
	// simMaxBackoff is the longest backoff the controller sets (promotions.finish).
	simMaxBackoff = 64 * simDownAfter
)

// healed: every fault is over from now on.
func (c *simChecker) healed() {
	s := c.s
	c.healedAt, c.settledAt, c.lastSettled, c.backoff = s.now, 0, 0, 0
	c.waiting = map[*simClient]waitingSince{}
	if t := s.home.term; t != nil {
		p := t.lt.promo
		p.mu.Lock()
		next, ok := p.next[simGroup]
		p.mu.Unlock()
		if ok {
			c.backoff = min(max(next.Sub(t.now(s)), 0), simMaxBackoff)
		}
	}
}

// livenessCheck runs after every step once the faults healed: it returns a description
// of the failure when the group has not settled within simSettleBound, or a client's
// request has waited for its answer longer than simAnswerBound ("" while neither holds).
// settled tells whether the group is settled now.
func (c *simChecker) livenessCheck(settled bool) string {
	s := c.s
	since := s.now - c.healedAt - c.backoff
	if settled && c.settledAt == 0 {
		c.settledAt = s.now
		s.stats.settleMax = max(s.stats.settleMax, since)
	}
	if settled {
		c.lastSettled = s.now
	}
	// Once settled, the group must not stay unsettled for the bound again: under a steady
	// load across WAN links its commit point trails its log by a round trip at times.
	if !settled && s.now-max(c.healedAt+c.backoff, c.lastSettled) > simSettleBound {
		return fmt.Sprintf("liveness: the group has not settled %v after every fault healed and the promotion backoff (%v) ended (bound %v): %s (invariant 15)",
			since, c.backoff, simSettleBound, c.livenessState())
	}
	failure := ""
	for _, cl := range c.clients {
		if cl.req == nil {
			delete(c.waiting, cl)
			continue
		}
		w, ok := c.waiting[cl]
		if !ok || w.req != cl.req {
			w = waitingSince{req: cl.req, since: s.now}
			c.waiting[cl] = w
		}
		waited := s.now - max(w.since, c.healedAt+c.backoff)
		s.stats.waitMax = max(s.stats.waitMax, waited)
		s.stats.backoffMax = max(s.stats.backoffMax, c.backoff)
		if waited > simAnswerBound && failure == "" {
			failure = fmt.Sprintf("liveness: client %d has waited %v since the faults healed and the promotion backoff (%v) ended for the answer to its %s %s (tries %d, bound %v): %s (invariant 15)",
				cl.id, waited, c.backoff, cl.req.Op, cl.req.RID, cl.tries, simAnswerBound, c.livenessState())
		}
	}
	return failure
}

// answeredSince reports whether every request outstanding in snapshot (an earlier copy of
// c.waiting) has had its answer: its client has moved on to another request, or none.
func (c *simChecker) answeredSince(snapshot map[*simClient]waitingSince) bool {
	for cl, w := range snapshot {
		if cl.req == w.req {
			return false
		}
	}
	return true
}

// livenessState describes what the group's main is doing, for a liveness failure.
func (c *simChecker) livenessState() string {
	s := c.s
	g := s.group()
	if g == nil {
		return "no directory record"
	}
	if g.Main == 0 {
		return "the directory names no main: " + groupString(g)
	}
	m := s.node(g.Main)
	state := fmt.Sprintf("directory: %s; main node %d up=%v role=%s roleEpoch=%d", groupString(g), m.id, m.up, m.c.Role(), m.c.Epoch())
	if m.c.Replication() != nil {
		state += fmt.Sprintf(" commit=%d last=%d persisted=%d", m.c.Commit(), m.log.Last(), m.persisted)
	}
	return state
}
