package location

import (
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A rehome's record can be stale in its main, not only in its configs: group 1 was homed
// in loc1 with main 1 (loc1) and voters 2, 5 (loc2) and 4 (loc1), epoch 1. Node 1 was cut
// off; loc1 promoted node 4 at epoch 2 (its barrier and the writes after it acked by 2, 4
// and 5, config version 2), then loc1's controllers and node 4 were lost. Nodes 2 and 5
// restarted (their directories are in memory only), node 1 came back holding loc1's record
// from before the promotion, and loc2 took the group over from that record. The rehome
// chose no main (too few seals, or a sealed copy at config version 2), so loc2 lists main 1
// at epoch 1 and node 1, fenced by its siblings, reports no role in epoch 1.
//
// Node 1 lacks the writes node 4 had acked at epoch 2. Giving it a fresh epoch makes it
// the main of loc2's band: its appends attach at its last entry of epoch 1, and siblings 2
// and 5 truncate the epoch-2 entries above their commit point. A main named only by a
// rehome's record has never been confirmed at the new generation; it must not be refreshed
// (docs/locations.md "Moving a home", rule 5).
func staleMainRehomed(t *testing.T) (*fsm, uint64) {
	f := newFSM()
	attempt := command.EpochBand(1)
	cmds := []dirCommand{
		registerController{Controller: controllerRecord{ID: "c4", HTTPAddr: "h4", RaftAddr: "r4", Location: "loc2"}},
		joinNode{ID: 2, Addr: "127.0.0.1:2", Location: "loc2", Instance: "i2", Incarnation: 1},
		joinNode{ID: 5, Addr: "127.0.0.1:5", Location: "loc2", Instance: "i5", Incarnation: 1},
		beginRehome{Group: command.GroupInfo{Server: 1, Epoch: 1, Main: 1, Home: "loc2", HomeGen: 1, RehomedFrom: "loc1",
			Active: command.Config{Version: 1, Voters: []uint16{2, 4, 5}},
			Siblings: []command.Member{{Node: 2, State: command.SiblingVoting}, {Node: 4, State: command.SiblingVoting},
				{Node: 5, State: command.SiblingVoting}},
			Promotion: &command.Promotion{Epoch: attempt, Phase: command.PromotionSealing, From: 1, Reason: command.ReasonRehome}}},
		abandonPromotion{Server: 1, Epoch: attempt}, // the rehome's: too few seals
		joinNode{ID: 1, Addr: "127.0.0.1:1", Location: "loc1", Instance: "i1", Incarnation: 1, Guest: true},
	}
	idx := uint64(1)
	for _, c := range cmds {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	return f, idx
}

func TestStaleRehomedMainGetsNoFreshEpoch(t *testing.T) {
	const downAfter = time.Second
	f, idx := staleMainRehomed(t)
	start := time.Unix(1700000000, 0)
	term := newLeaderTerm(start)
	now := start
	gen := uint64(0)
	for waited := time.Duration(0); waited <= 3*downAfter; waited += downAfter / 4 {
		gen++
		// Node 1: fenced in epoch 1, its log ends at (1, 40). Node 2 holds node 4's epoch-2
		// entries (2, 45) and promised loc2's band; node 5 is down.
		term.noteHeartbeat(command.Heartbeat{Node: 1, Generation: gen, Groups: []command.GroupReport{
			{Server: 1, Role: "none", Epoch: 1, LastEpoch: 1, LastSeq: 40}}}, now)
		term.noteHeartbeat(command.Heartbeat{Node: 2, Generation: gen, Groups: []command.GroupReport{
			{Server: 1, Role: command.RoleSibling, Epoch: command.EpochBand(1), LastEpoch: 2, LastSeq: 45,
				Home: "loc2", HomeGen: 1}}}, now)
		st, _ := f.view()
		d := st.directory(func(n nodeRecord) (string, uint64) { return term.nodeState(n, now, downAfter) })
		for _, a := range planPromotionActions(term, d, term.snapshotReports(), now, downAfter) {
			if a.group.Server != 1 || !a.refresh {
				continue
			}
			err := applyAt(t, f, idx, refreshMain{Server: 1, Epoch: a.group.Epoch, Main: a.group.Main})
			g, _ := f.group(1)
			t.Fatalf("after %v the main named only by the rehome's record (its log ends at epoch 1, a voter holds epoch 2) "+
				"was given a fresh epoch: refreshMain -> %v, group now main %d epoch %d (generation %d's band)",
				waited, err, g.Main, g.Epoch, command.HomeGenOfEpoch(g.Epoch))
		}
		now = now.Add(downAfter / 4)
	}
}

// The same stale record, with an attempt of loc2's promotion rounds that seals nodes 2 and
// 5 (both report config version 2 and entries of epoch 2): the attempt is abandoned, and it
// must not refresh main 1 either.
func TestStaleRehomedMainNotRefreshedByAnAbandonedAttempt(t *testing.T) {
	f, _ := staleMainRehomed(t)
	g, _ := f.group(1)
	seals := map[uint16]command.SealReply{
		2: {Node: 2, Epoch: g.NextEpoch(), LastEpoch: 2, LastSeq: 45, Config: 2},
		5: {Node: 5, Epoch: g.NextEpoch(), LastEpoch: 2, LastSeq: 45, Config: 2},
	}
	cmd, _ := decidePromotion(&g, g.NextEpoch(), seals, true, 0, nil)
	if ab, ok := cmd.(abandonPromotion); !ok || ab.Refresh {
		t.Fatalf("decision on a stale rehomed record whose main still reports: %T %+v; want an abandon without Refresh", cmd, cmd)
	}
}

// The FSM refuses the refresh itself, whoever proposes it.
func TestRefreshMainRefusedForAMainNamedOnlyByARehome(t *testing.T) {
	f, idx := staleMainRehomed(t)
	if err := applyAt(t, f, idx, refreshMain{Server: 1, Epoch: 1, Main: 1}); err == nil {
		g, _ := f.group(1)
		t.Fatalf("refreshMain of the rehomed record's main was applied: main %d epoch %d", g.Main, g.Epoch)
	}
}

// A restarted process of a main named only by a rehome's record does not get the fresh
// epoch a restarted main gets: it loses the role, keeps its copy as a learner, and the
// group waits for a promotion among its voters.
func TestRestartedMainNamedOnlyByARehomeLosesTheRole(t *testing.T) {
	f, idx := staleMainRehomed(t)
	before, _ := f.group(1)
	if err := applyAt(t, f, idx, joinNode{ID: 1, Addr: "127.0.0.1:1", Location: "loc1", Instance: "i1-restarted", Incarnation: 2, Guest: true}); err != nil {
		t.Fatal(err)
	}
	g, _ := f.group(1)
	if g.Main != 0 || g.Epoch != before.Epoch {
		t.Fatalf("after node 1 restarted: main %d epoch %d (was main %d epoch %d); want no main and the epoch unchanged",
			g.Main, g.Epoch, before.Main, before.Epoch)
	}
	if m := member(&g, 1); m == nil || m.State != command.SiblingSyncing {
		t.Fatalf("node 1 after its restart: %+v, want a learner", m)
	}
}

// A node whose first join at a location says its data directory was wiped holds none of the
// copies a record a rehome took over names: as main there it loses the role and its old copy
// ID is kept as lost, as at a location that knew it (TestSimulationLocations found a wiped
// main kept by its group's new home: fresh seed 772533890876, case 5D).
func TestWipedMainFirstJoiningItsGroupsNewHomeLosesTheRole(t *testing.T) {
	f := newFSM()
	attempt := command.EpochBand(1)
	cmds := []dirCommand{
		joinNode{ID: 2, Addr: "127.0.0.1:2", Location: "loc2", Instance: "i2", Incarnation: 1},
		beginRehome{Group: command.GroupInfo{Server: 1, Epoch: 2, Main: 7, MainCopyID: "c7.1", Home: "loc2", HomeGen: 1, RehomedFrom: "loc1",
			Active:    command.Config{Version: 1, Voters: []uint16{2, 5, 7}},
			Siblings:  []command.Member{{Node: 2, State: command.SiblingVoting, CopyID: "c2.1"}, {Node: 5, State: command.SiblingVoting, CopyID: "c5.1"}},
			Promotion: &command.Promotion{Epoch: attempt, Phase: command.PromotionSealing, From: 7, Reason: command.ReasonRehome}}},
	}
	idx := uint64(1)
	for _, c := range cmds {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	if err := applyAt(t, f, idx, joinNode{ID: 7, Addr: "127.0.0.1:7", Location: "loc1", Instance: "i7-2", Incarnation: 2, Guest: true, Wiped: true}); err != nil {
		t.Fatal(err)
	}
	g, _ := f.group(1)
	if g.Main != 0 {
		t.Fatalf("after node 7's first join, wiped: main %d, want none", g.Main)
	}
	if m := member(&g, 7); m == nil || m.State != command.SiblingSyncing || m.CopyID != "c7.1" {
		t.Fatalf("node 7 after its first join, wiped: %+v, want a learner whose counted copy is the lost c7.1", m)
	}
	if g.Promotion == nil || g.Promotion.Phase != command.PromotionSealing || g.Promotion.Epoch != attempt {
		t.Fatalf("the rehome's attempt after the join: %+v, want it still open at %d", g.Promotion, attempt)
	}

	// Without the wipe, a first join keeps the node's role: it may be the process that was
	// main all along.
	f2 := newFSM()
	for i, c := range cmds {
		if err := applyAt(t, f2, uint64(i+1), c); err != nil {
			t.Fatal(err)
		}
	}
	if err := applyAt(t, f2, idx, joinNode{ID: 7, Addr: "127.0.0.1:7", Location: "loc1", Instance: "i7-1", Incarnation: 1, Guest: true}); err != nil {
		t.Fatal(err)
	}
	if g, _ := f2.group(1); g.Main != 7 {
		t.Fatalf("after node 7's first join: main %d, want 7 kept", g.Main)
	}
}
