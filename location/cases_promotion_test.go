package location

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/sibling"
)

// sealingNode is a fakeNode that also answers seals on its own HTTP listener, and records
// every (epoch, main) of its group that the directories it receives show.
type sealingNode struct {
	*fakeNode
	addr string
	srv  *http.Server

	mu     sync.Mutex
	seals  []command.SealRequest
	block  bool          // hold every seal until the caller goes away or release closes
	first  chan struct{} // closed at the first held seal
	once   sync.Once
	seen   map[uint16]map[uint64]uint16 // server -> epoch -> main, as the directory showed it
	twoErr error                        // the first (group, epoch) seen with two mains
}

func newSealingNode(t *testing.T, id uint16, ctls []string) *sealingNode {
	ln := listen(t, "127.0.0.1:0")
	n := &sealingNode{fakeNode: &fakeNode{id: id, instance: fmt.Sprintf("inst-%d", id), ctls: ctls},
		addr: ln.Addr().String(), first: make(chan struct{}), seen: map[uint16]map[uint64]uint16{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/internal/seal", n.serveSeal)
	n.srv = &http.Server{Handler: mux}
	go func() { _ = n.srv.Serve(ln) }()
	t.Cleanup(func() { _ = n.srv.Close() })
	return n
}

func (n *sealingNode) serveSeal(w http.ResponseWriter, r *http.Request) {
	var req command.SealRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	n.seals = append(n.seals, req)
	block := n.block
	n.mu.Unlock()
	if block {
		n.once.Do(func() { close(n.first) })
		<-r.Context().Done() // the controller that sent it went away
		return
	}
	_ = json.NewEncoder(w).Encode(command.SealReply{Node: n.id, LastEpoch: 1, LastSeq: fakeLastSeq - 5,
		CommitSeq: fakeLastSeq - 5, CopyID: copyName(req.Server, n.id)})
}

func (n *sealingNode) join() error {
	_, err := n.send(pathJoin, command.JoinRequest{ID: n.id, Addr: n.addr, Instance: n.instance, Incarnation: 1})
	return err
}

// observe records the (epoch, main) of every group in the node's latest directory.
func (n *sealingNode) observe() {
	n.fakeNode.mu.Lock()
	d := n.dir
	n.fakeNode.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, g := range d.Groups {
		if g.Main == 0 {
			continue
		}
		byEpoch := n.seen[g.Server]
		if byEpoch == nil {
			byEpoch = map[uint64]uint16{}
			n.seen[g.Server] = byEpoch
		}
		if m, ok := byEpoch[g.Epoch]; ok && m != g.Main && n.twoErr == nil {
			n.twoErr = fmt.Errorf("group %d epoch %d had main %d and then main %d", g.Server, g.Epoch, m, g.Main)
		}
		byEpoch[g.Epoch] = g.Main
	}
}

func (n *sealingNode) run(stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if n.heartbeat() == nil {
				n.observe()
			}
		}
	}
}

func (n *sealingNode) sealEpochs() map[uint64]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[uint64]int{}
	for _, s := range n.seals {
		out[s.Epoch]++
	}
	return out
}

// Case 5 (rule "A controller that becomes leader calls raft Barrier(), reads the record, and
// resumes from it. If no main is committed for the attempt, it abandons that epoch and
// starts a new attempt at the next one"), with a real raft cluster: the leader commits
// beginPromotion and sends its seals; it is shut down before any seal answers. The new
// leader must abandon (or finish) that attempt, never reuse its epoch, and no epoch may ever
// have two mains.
func TestCase5_LeaderChangeDuringPromotion(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.leader(10 * time.Second)
	var nodes []*sealingNode
	for i := uint16(1); i <= 4; i++ {
		n := newSealingNode(t, i, tc.httpAddrs())
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	stops := map[uint16]chan struct{}{}
	var beating sync.WaitGroup
	for _, n := range nodes {
		stops[n.id] = make(chan struct{})
		beating.Add(1)
		go n.run(stops[n.id], &beating)
	}
	stopped := map[uint16]bool{}
	stopNode := func(id uint16) {
		if !stopped[id] {
			stopped[id] = true
			close(stops[id])
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			stopNode(n.id)
		}
		beating.Wait()
	})
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if !converged(d, 4) {
			return fmt.Errorf("not converged")
		}
		return nil
	})
	d, err := tc.directory()
	if err != nil {
		t.Fatal(err)
	}
	g1 := d.Group(1)
	if g1 == nil || g1.Main != 1 || g1.Epoch != 1 {
		t.Fatalf("group 1 before the failure: %+v", g1)
	}
	attempt := g1.NextEpoch()
	for _, n := range nodes {
		n.mu.Lock()
		n.block = true
		n.mu.Unlock()
	}

	// Node 1, main of group 1, goes silent; the leader opens an attempt and sends seals.
	lead := tc.leader(10 * time.Second)
	stopNode(1)
	var held *sealingNode
	select {
	case <-nodes[1].first:
		held = nodes[1]
	case <-nodes[2].first:
		held = nodes[2]
	case <-nodes[3].first:
		held = nodes[3]
	case <-time.After(20 * time.Second):
		t.Fatal("no seal reached a sibling of group 1")
	}
	// A seal is sent only after beginPromotion committed.
	ld := lead.c.Directory()
	if p := ld.Group(1).Promotion; p == nil || p.Epoch != attempt || p.Phase != command.PromotionSealing {
		t.Fatalf("seal of node %d arrived, leader's record %+v, want attempt %d sealing", held.id, p, attempt)
	}
	t.Logf("attempt %d sealing on leader %s; shutting it down", attempt, lead.id)
	tc.stop(lead.id)
	for _, n := range nodes {
		n.mu.Lock()
		n.block = false
		n.mu.Unlock()
	}

	// The new leader resumes from the record: the attempt ends (abandoned or chosen) and
	// group 1 gets a main other than node 1, in an epoch above every attempt.
	var final *command.GroupInfo
	eventuallyOK(t, 30*time.Second, "group 1 promoted by the new leader", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		g := d.Group(1)
		if g.Main == 1 || g.Promotion == nil || g.Promotion.Phase != command.PromotionChosen {
			return fmt.Errorf("group 1: main %d promotion %+v", g.Main, g.Promotion)
		}
		final = g
		return nil
	})
	newLead := tc.leader(10 * time.Second)
	t.Logf("new leader %s: group 1 epoch %d main %d", newLead.id, final.Epoch, final.Main)
	if final.Epoch < attempt {
		t.Fatalf("group 1 at epoch %d, below the attempt %d", final.Epoch, attempt)
	}
	// Seals of the interrupted attempt came only from the old leader: the new one sealed at a
	// fresh epoch unless it finished that very attempt.
	for _, n := range nodes[1:] {
		for e, count := range n.sealEpochs() {
			if e < attempt {
				t.Fatalf("node %d got a seal at epoch %d, below the attempt %d", n.id, e, attempt)
			}
			if e == attempt && final.Epoch != attempt && count > 1 {
				t.Fatalf("node %d was sealed %d times at the abandoned epoch %d: the epoch was reused", n.id, count, attempt)
			}
		}
	}
	// No epoch ever had two mains, and the abandoned epoch never had a main at all.
	for _, n := range nodes[1:] {
		n.observe()
		n.mu.Lock()
		// A copy: the node's heartbeat loop may still be adding to its map.
		err, seen := n.twoErr, maps.Clone(n.seen[1])
		n.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := seen[attempt]; ok && final.Epoch != attempt {
			t.Fatalf("node %d saw main %d in epoch %d, which was abandoned", n.id, m, attempt)
		}
		if m, ok := seen[final.Epoch]; ok && m != final.Main {
			t.Fatalf("node %d saw main %d in epoch %d, chosen for %d", n.id, m, final.Epoch, final.Main)
		}
	}
}

// Case 5 (disk loss), for a main a promotion chose: until the promotion's config is
// activated, the main is still a voter of the active config. If it crashes, loses its disk
// and comes back, its seal must count only from the copy that was chosen, or a later
// promotion could cover the active config with an empty copy and choose a sibling that lacks
// what the main and the lost copy committed. The chosen copy's ID goes with the main
// (GroupInfo.MainCopyID) and back to its member record when it returns.
func TestCase5_ChosenMainKeepsItsCopyID(t *testing.T) {
	f, idx := threeVoters(t)
	fsmStep(t, f, &idx, beginPromotion{Server: 1, Epoch: 2, From: 1}, choosePromotion{Server: 1, Epoch: 2, Main: 2})
	g, _ := f.group(1)
	if g.Main != 2 || g.MainCopyID != "copy-2" || !slices.Contains(g.Active.Voters, 2) || g.Pending == nil {
		t.Fatalf("after the choice: main %d copy %q active %v pending %v; want main 2 with copy-2, still a voter of the active config",
			g.Main, g.MainCopyID, g.Active.Voters, g.Pending)
	}
	// Node 2 comes back on a wiped data directory (its incarnation counter restarted).
	fsmStep(t, f, &idx, joinNode{ID: 2, Addr: "127.0.0.1:1", Location: "default", Instance: "inst-after-wipe", Incarnation: 1})
	g, _ = f.group(1)
	m := member(&g, 2)
	if g.Main != 0 || m == nil || m.CopyID != "copy-2" {
		t.Fatalf("after the wiped main rejoined: main %d member %+v; want no main and node 2 recorded with copy-2", g.Main, m)
	}
	replies := map[uint16]command.SealReply{}
	if counted, _ := addSeal(&g, replies, command.SealReply{Node: 2, CopyID: "copy-2-new"}, 3); counted {
		t.Fatal("the seal of node 2's new, empty copy was counted")
	}
	if counted, _ := addSeal(&g, replies, command.SealReply{Node: 2, CopyID: "copy-2"}, 3); !counted {
		t.Fatal("the seal of the copy that was chosen was not counted")
	}
}

// coreCopy is one copy of a group in the tests below: the node's real replication core over
// an in-memory log, with the durable epoch and commit point its driver would keep.
type coreCopy struct {
	c      *core.Group
	log    *sibling.MemLog
	epoch  uint64
	commit uint64
	gen    uint64 // heartbeats sent to the controller
}

// coreGroup drives the copies of one group on a fake clock, as node/ drives them: every
// step the main sends its heartbeat and its new entries to each sibling, the siblings make
// them durable and answer, and every node heartbeats the controller with its report. While
// acksLost, no answer reaches the main: a one-way partition.
type coreGroup struct {
	t        *testing.T
	gi       command.GroupInfo
	copies   map[uint16]*coreCopy
	now      time.Time
	acksLost bool
}

func newCoreGroup(t *testing.T, gi command.GroupInfo, now time.Time, downAfter time.Duration) *coreGroup {
	g := &coreGroup{t: t, gi: gi, copies: map[uint16]*coreCopy{}, now: now}
	for _, id := range append([]uint16{gi.Main}, gi.Active.Voters...) {
		g.copies[id] = &coreCopy{log: sibling.NewMemLog(),
			c: core.New(core.Config{Group: gi.Server, Self: id, MaxBytes: 1 << 16, Window: 4, DownAfter: downAfter}, 0, 0)}
	}
	for _, id := range g.ids() {
		if err := g.copies[id].c.Follow(&gi, id != gi.Main, g.disk(id), now); err != nil {
			t.Fatalf("copy %d: %v", id, err)
		}
		g.drain(id)
	}
	g.persist()
	return g
}

func (g *coreGroup) ids() []uint16 { return slices.Sorted(maps.Keys(g.copies)) }

func (g *coreGroup) main() *coreCopy { return g.copies[g.gi.Main] }

func (g *coreGroup) disk(id uint16) func() (core.Disk, error) {
	return func() (core.Disk, error) {
		cp := g.copies[id]
		last := cp.log.Last()
		le, _ := cp.log.EpochAt(last)
		return core.Disk{Epoch: cp.epoch, LastEpoch: le, LastSeq: last, Commit: cp.commit, History: historyOf(cp.log), Log: cp.log}, nil
	}
}

func (g *coreGroup) drain(id uint16) {
	cp := g.copies[id]
	rd := cp.c.Ready()
	for _, p := range rd.Entries {
		if err := cp.log.Append(p.Entry); err != nil {
			g.t.Fatalf("copy %d: %v", id, err)
		}
	}
	for _, rc := range rd.Roles {
		if rc.Violation != nil {
			g.t.Fatalf("copy %d: %v", id, rc.Violation)
		}
	}
}

// persist is the main's persist loop: its log and its epoch are durable.
func (g *coreGroup) persist() {
	cp := g.main()
	e := cp.c.NewEpoch()
	cp.epoch = max(cp.epoch, e)
	cp.c.Persisted(e, cp.log.Last())
	g.drain(g.gi.Main)
	cp.commit = max(cp.commit, cp.c.Commit())
}

// step advances the clock by d, has the main take a write (left pending until a quorum
// acks it), replicates, and sends every node's heartbeat to the controller term.
func (g *coreGroup) step(d time.Duration, term *leaderTerm) {
	g.now = g.now.Add(d)
	m := g.main()
	m.c.Propose(&command.Effect{Kind: command.EffectNoop, At: g.now})
	g.drain(g.gi.Main)
	g.persist()
	g.replicate()
	for _, id := range g.ids() {
		cp := g.copies[id]
		cp.gen++
		rep := cp.c.Report(g.now, func() (uint64, uint64) {
			le, _ := cp.log.EpochAt(cp.log.Last())
			return le, cp.log.Last()
		})
		rep.CopyID = copyName(g.gi.Server, id)
		term.noteHeartbeat(command.Heartbeat{Node: id, Generation: cp.gen, Groups: []command.GroupReport{rep}}, g.now)
	}
}

// replicate sends each sibling the main's heartbeat and what it has to send, and the
// siblings' answers back unless acksLost.
func (g *coreGroup) replicate() {
	m := g.main()
	rep := m.c.Replication()
	for _, to := range g.ids() {
		if to == g.gi.Main {
			continue
		}
		var msgs []*sibling.Append
		if hb := rep.Heartbeat(to); hb != nil {
			msgs = append(msgs, hb)
		}
		for {
			a, err := rep.NextAppend(to)
			if err != nil {
				g.t.Fatalf("main to %d: %v", to, err)
			}
			if a == nil {
				break
			}
			msgs = append(msgs, a)
		}
		s := g.copies[to]
		authorize := func(epoch uint64, main uint16) bool { return epoch == g.gi.Epoch && main == g.gi.Main }
		writes, acks := s.c.Step(msgs, authorize, g.now)
		g.drain(to)
		for i := range writes {
			w := &writes[i]
			s.epoch = max(s.epoch, w.Epoch)
			if w.Truncate > 0 {
				s.log.Truncate(w.Truncate)
			}
			if err := s.log.Append(w.Append...); err != nil {
				g.t.Fatalf("copy %d: %v", to, err)
			}
			s.commit = max(s.commit, w.Commit)
			s.c.Written(w)
		}
		if !g.acksLost {
			m.c.HandleAcks(acks, g.now)
			g.drain(g.gi.Main)
		}
	}
}

// Case 7 scenario B: "one-way partition. Siblings receive the stream but their acks never
// reach the main: nobody 'lost the stream', nobody is promoted, nothing commits." Rule (ii):
// the controller marks the main down when it reported no write quorum for down-after while
// it had pending writes, and then the main's own report suffices: the seal is not automatic,
// so siblings that still hear the main accept it. The main and its three siblings are real
// replication cores; the controller's decisions are the real planning on a fake clock.
func TestCase7B_OneWayPartitionMainIsReplacedOnItsOwnReport(t *testing.T) {
	const downAfter = time.Second
	const tick = downAfter / 4 // the nodes' heartbeat period
	f, idx := threeVoters(t)
	gi, _ := f.group(1)
	start := time.Unix(1700000000, 0)
	term := newLeaderTerm(start)
	g := newCoreGroup(t, gi, start, downAfter)
	plan := func() (promotionAction, bool) {
		st, _ := f.view()
		d := st.directory(func(n nodeRecord) (string, uint64) { return term.nodeState(n, g.now, downAfter) })
		for _, a := range planPromotionActions(term, d, term.snapshotReports(), g.now, downAfter) {
			if a.group.Server == gi.Server && a.start {
				return a, true
			}
		}
		return promotionAction{}, false
	}

	for range 8 {
		g.step(tick, term)
		if a, ok := plan(); ok {
			t.Fatalf("at %v, with every write committing, the controller started a promotion (%s)", g.now.Sub(start), a.why)
		}
	}
	m := g.main().c
	if m.Commit() != g.main().log.Last() {
		t.Fatalf("setup: commit %d of %d entries with every ack delivered", m.Commit(), g.main().log.Last())
	}

	g.acksLost = true
	cut, committed := g.now, m.Commit()
	var noQuorumSince time.Time
	var action promotionAction
	for started := false; !started; {
		g.step(tick, term)
		if g.now.Sub(cut) > 3*downAfter {
			t.Fatalf("%v after the cut, the controller has not replaced the main (it reports %+v)", g.now.Sub(cut), term.snapshotReports()[gi.Main][gi.Server].Siblings)
		}
		if c := m.Commit(); c != committed || m.Replication().LastSeq() <= c {
			t.Fatalf("%v after the cut: commit %d (was %d), last entry %d: want writes pending and nothing committed", g.now.Sub(cut), c, committed, m.Replication().LastSeq())
		}
		for _, id := range gi.Active.Voters {
			if !g.copies[id].c.Heard(g.now) {
				t.Fatalf("%v after the cut, sibling %d no longer hears the main: the partition is one-way", g.now.Sub(cut), id)
			}
		}
		cur, _ := f.group(gi.Server)
		if noQuorum, _ := mainNoQuorum(&cur, term.snapshotReports()); noQuorum && noQuorumSince.IsZero() {
			noQuorumSince = g.now
		}
		action, started = plan()
	}
	t.Logf("cut at %v; the main reported no write quorum from %v; promotion started at %v (%s)",
		cut.Sub(start), noQuorumSince.Sub(start), g.now.Sub(start), action.why)
	if g.now.Sub(cut) < downAfter {
		t.Fatalf("promotion started %v after the cut, before down-after (%v) without an ack", g.now.Sub(cut), downAfter)
	}
	if noQuorumSince.IsZero() || g.now.Sub(noQuorumSince) < downAfter/2 {
		t.Fatalf("promotion started at %v, when the main had reported no quorum only since %v", g.now.Sub(start), noQuorumSince.Sub(start))
	}
	if action.auto {
		t.Fatal("the promotion's seal is automatic: every sibling still hears the main and would refuse it")
	}

	// The seal: the siblings still hear the main, so an automatic seal would be refused;
	// this one, backed by the main's own report, is accepted by all of them.
	epoch := gi.NextEpoch()
	replies := map[uint16]command.SealReply{}
	for _, id := range gi.Active.Voters {
		s := g.copies[id].c
		if err := s.CheckSeal(&command.SealRequest{Server: gi.Server, Epoch: epoch, From: gi.Main, Auto: true}, true, g.now); !errors.Is(err, core.ErrSealHears) {
			t.Fatalf("sibling %d on an automatic seal while it hears the main: %v, want %v", id, err, core.ErrSealHears)
		}
		req := command.SealRequest{Server: gi.Server, Epoch: epoch, From: gi.Main, Auto: action.auto}
		if err := s.CheckSeal(&req, true, g.now); err != nil {
			t.Fatalf("sibling %d refused the promotion's seal: %v", id, err)
		}
		g.copies[id].epoch = epoch
		d, _ := g.disk(id)()
		le, ls, commit := s.Seal(epoch, d)
		replies[id] = command.SealReply{Node: id, LastEpoch: le, LastSeq: ls, CommitSeq: commit, CopyID: member(&gi, id).CopyID}
	}
	cmd, chosen := decidePromotion(&gi, epoch, replies, true, 0, nil)
	choice, ok := cmd.(choosePromotion)
	if !ok || chosen.LastSeq <= committed {
		t.Fatalf("decision %T %+v (chosen %+v); want a new main holding the entries above the commit point %d", cmd, cmd, chosen, committed)
	}
	fsmStep(t, f, &idx, beginPromotion{Server: gi.Server, Epoch: epoch, From: gi.Main}, choice)
	if after, _ := f.group(gi.Server); after.Main != chosen.Node || after.Epoch != epoch {
		t.Fatalf("group after the promotion: main %d epoch %d, want main %d epoch %d", after.Main, after.Epoch, chosen.Node, epoch)
	}
}

// A main fenced by an attempt that was abandoned while the main was out of reach (so
// without Refresh) reports no role in its epoch when it is back. With one voter of the
// active config lost (fewer than R up), no new attempt can start, so the main must get a
// fresh epoch itself (refreshMain), or the group waits for ever. Found by the location
// simulation (seed 428): the active config's only voter had lost its disk.
func TestStrandedFencedMainGetsAFreshEpoch(t *testing.T) {
	const downAfter = time.Second
	f, idx := threeVoters(t) // group 1: main 1, voters 2, 3, 4
	apply := func(c dirCommand) error {
		err := applyAt(t, f, idx, c)
		idx++
		return err
	}
	gi, _ := f.group(1)
	attempt := gi.NextEpoch()
	for _, c := range []dirCommand{
		beginPromotion{Server: 1, Epoch: attempt, From: 1},
		abandonPromotion{Server: 1, Epoch: attempt}, // by a new leader, the main cut off
	} {
		if err := apply(c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
	}
	start := time.Unix(1700000000, 0)
	term := newLeaderTerm(start)
	now := start
	gen := uint64(0)
	// Node 1 (the main, fenced: no role) and voter 2 heartbeat; voters 3 and 4 are down.
	heartbeat := func(role string) {
		gen++
		term.noteHeartbeat(command.Heartbeat{Node: 1, Generation: gen, Groups: []command.GroupReport{
			{Server: 1, Role: role, Epoch: gi.Epoch, LastEpoch: gi.Epoch, LastSeq: 40}}}, now)
		term.noteHeartbeat(command.Heartbeat{Node: 2, Generation: gen, Groups: []command.GroupReport{
			{Server: 1, Role: command.RoleSibling, Epoch: attempt, LastEpoch: gi.Epoch, LastSeq: 40}}}, now)
	}
	plan := func() []promotionAction {
		st, _ := f.view()
		d := st.directory(func(n nodeRecord) (string, uint64) { return term.nodeState(n, now, downAfter) })
		var out []promotionAction
		for _, a := range planPromotionActions(term, d, term.snapshotReports(), now, downAfter) {
			if a.group.Server == 1 {
				out = append(out, a)
			}
		}
		return out
	}
	refreshAfter := func(role string) time.Duration {
		for waited := time.Duration(0); waited <= 3*downAfter; waited += downAfter / 4 {
			heartbeat(role)
			for _, a := range plan() {
				if a.start {
					t.Fatalf("a promotion started with 2 of 3 voters down: %+v", a)
				}
				if a.refresh {
					return waited
				}
			}
			now = now.Add(downAfter / 4)
		}
		return -1
	}

	if w := refreshAfter(command.RoleMain); w >= 0 {
		t.Fatalf("a main that serves got a fresh epoch after %v", w)
	}
	w := refreshAfter("none")
	if w < downAfter {
		t.Fatalf("the fenced main got a fresh epoch after %v; want one after down-after (%v), not before", w, downAfter)
	}
	if err := apply(refreshMain{Server: 1, Epoch: gi.Epoch, Main: 1}); err != nil {
		t.Fatal(err)
	}
	after, _ := f.group(1)
	if after.Main != 1 || after.Epoch <= attempt {
		t.Fatalf("after the refresh: main %d epoch %d; want main 1 in an epoch above the abandoned attempt %d", after.Main, after.Epoch, attempt)
	}
	if err := apply(refreshMain{Server: 1, Epoch: gi.Epoch, Main: 1}); err == nil {
		t.Fatal("a second refresh of the old epoch was applied")
	}
	// Never while an attempt is open.
	if err := apply(beginPromotion{Server: 1, Epoch: after.NextEpoch(), From: 1}); err != nil {
		t.Fatal(err)
	}
	if err := apply(refreshMain{Server: 1, Epoch: after.Epoch, Main: 1}); err == nil {
		t.Fatal("a refresh was applied while an attempt is open")
	}
}
