package location

import (
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Named tests for docs/replication.md cases 13 and 14 on the controller's side: the directory's
// commands (FSM) and the reconcile planner that drives registration.

// fsmStep applies cmds in order at consecutive indexes, failing the test on a refusal.
func fsmStep(t *testing.T, f *fsm, idx *uint64, cmds ...dirCommand) {
	t.Helper()
	for _, c := range cmds {
		if err := applyAt(t, f, *idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		*idx++
	}
}

// upDirectory is the FSM's directory with every node up.
func upDirectory(f *fsm) command.Directory {
	st, _ := f.view()
	return st.directory(func(nodeRecord) (string, uint64) { return command.NodeUp, 1 })
}

// promotedReports: main (of epoch) reports every sibling in progress as given, and the
// pending config activated when activated is true.
func promotedReports(g command.GroupInfo, activated bool, progress ...command.SiblingProgress) reportSet {
	rep := command.GroupReport{Server: g.Server, Role: command.RoleMain, Epoch: g.Epoch, LastEpoch: g.Epoch,
		LastSeq: 1000, CommitSeq: 1000, Siblings: progress, Activated: g.Active.Version}
	if activated && g.Pending != nil {
		rep.Activated = g.Pending.Version
	}
	return reportSet{g.Main: {g.Server: rep}}
}

// runPlan applies one reconcile round's config commands for group server, and returns them.
func runPlan(t *testing.T, f *fsm, idx *uint64, server uint16, reports reportSet) []dirCommand {
	t.Helper()
	var applied []dirCommand
	for _, c := range planRound(upDirectory(f), reports, nil) {
		switch v := c.(type) {
		case proposeVoter:
			if v.Server != server {
				continue
			}
		case activate:
			if v.Server != server {
				continue
			}
		default:
			continue
		}
		fsmStep(t, f, idx, c)
		applied = append(applied, c)
	}
	return applied
}

func memberState(g command.GroupInfo, node uint16) string {
	for _, m := range g.Siblings {
		if m.Node == node {
			return m.State
		}
	}
	return ""
}

// Case 13 scenario A: "Every old main was absent at its own promotion ... relisting it as
// voting straight away, with a divergent tail, is a config change done outside case 1's
// rules." The rule: it rejoins as a syncing learner of the current epoch and votes again
// only through registration's config change, once the new main reports it caught up.
func TestCase13A_ReturningOldMainRejoinsAsLearner(t *testing.T) {
	f, idx := threeVoters(t) // group 1: main 1, voters 2, 3, 4
	fsmStep(t, f, &idx, beginPromotion{Server: 1, Epoch: 2, From: 1}, choosePromotion{Server: 1, Epoch: 2, Main: 2})
	g, _ := f.group(1)
	if memberState(g, 1) != command.SiblingSyncing {
		t.Fatalf("old main 1 after the promotion: %q, want a syncing learner (siblings %+v)", memberState(g, 1), g.Siblings)
	}
	if slices.Contains(g.Voters(), 1) {
		t.Fatalf("old main 1 counts in a config: active %v pending %v", g.Active, g.Pending)
	}
	// The new main reports its barrier committed under the new config, and node 1 back but
	// far behind: the config activates, node 1 stays a learner.
	behind := command.SiblingProgress{Node: 1, Seq: 10, Recent: true}
	runPlan(t, f, &idx, 1, promotedReports(g, true, behind))
	g, _ = f.group(1)
	if g.Pending != nil || memberState(g, 1) != command.SiblingSyncing || slices.Contains(g.Voters(), 1) {
		t.Fatalf("old main 1 behind its new main: %q, active %v pending %v; want a learner outside every config",
			memberState(g, 1), g.Active, g.Pending)
	}
	if cmds := runPlan(t, f, &idx, 1, promotedReports(g, false, behind)); len(cmds) != 0 {
		t.Fatalf("a lagging old main was proposed: %+v", cmds)
	}
	// Caught up: proposed through a config change, voting once the main activates it.
	caught := command.SiblingProgress{Node: 1, Seq: 1000, Recent: true}
	runPlan(t, f, &idx, 1, promotedReports(g, false, caught))
	g, _ = f.group(1)
	if g.Pending == nil || !slices.Contains(g.Pending.Voters, 1) || memberState(g, 1) != command.SiblingSyncing {
		t.Fatalf("caught-up old main: pending %v state %q, want a pending config with it, still syncing", g.Pending, memberState(g, 1))
	}
	runPlan(t, f, &idx, 1, promotedReports(g, true, caught))
	g, _ = f.group(1)
	if memberState(g, 1) != command.SiblingVoting || !slices.Contains(g.Active.Voters, 1) {
		t.Fatalf("after activation: state %q active %v, want node 1 voting", memberState(g, 1), g.Active)
	}
}

// Case 13 scenario C: "registerSibling(D) is in the replay phase at M. M crashes ... The new
// main knows D only as syncing, and nothing restarts the transfer. The admin call hangs, or
// D stays a learner forever." The controller's part of the rule: the learner survives the
// promotion as a learner (never counted, never chosen), and once the new main reports it
// caught up, the registration's config change goes through, so the registration completes.
func TestCase13C_RegistrationSurvivesPromotion(t *testing.T) {
	f, idx := threeVoters(t)
	const d uint16 = 5
	fsmStep(t, f, &idx, join(d), addLearner{Server: 1, Node: d})
	fsmStep(t, f, &idx, beginPromotion{Server: 1, Epoch: 2, From: 1})
	// A learner is never chosen.
	if err := applyAt(t, f, idx, choosePromotion{Server: 1, Epoch: 2, Main: d}); err == nil {
		t.Fatal("the learner was chosen as main")
	}
	idx++
	fsmStep(t, f, &idx, choosePromotion{Server: 1, Epoch: 2, Main: nA})
	g, _ := f.group(1)
	if memberState(g, d) != command.SiblingSyncing || slices.Contains(g.Voters(), d) {
		t.Fatalf("learner %d after the promotion: %q, voters %v; want still a learner, not counted", d, memberState(g, d), g.Voters())
	}
	// The new main (A) carries on with D: its barrier commits, then D catches up from the
	// position it had, and the registration's config change is proposed and activated.
	runPlan(t, f, &idx, 1, promotedReports(g, true))
	caught := command.SiblingProgress{Node: d, Seq: 995, Recent: true}
	g, _ = f.group(1)
	runPlan(t, f, &idx, 1, promotedReports(g, false, caught))
	g, _ = f.group(1)
	runPlan(t, f, &idx, 1, promotedReports(g, true, caught))
	g, _ = f.group(1)
	if memberState(g, d) != command.SiblingVoting || !slices.Contains(g.Active.Voters, d) || g.Main != nA || g.Epoch != 2 {
		t.Fatalf("registration after the promotion: D %q, active %v, main %d epoch %d; want D voting under main A in epoch 2",
			memberState(g, d), g.Active, g.Main, g.Epoch)
	}
}

// Case 13 scenario D: a planned promote hands the main role over "losing nothing"; the old
// main, which holds everything (it froze until the target held it all), stays a voting
// sibling: the config gains it as a voter rather than demoting it to a learner.
func TestCase13D_PlannedPromoteKeepsOldMainVoting(t *testing.T) {
	f, idx := threeVoters(t)
	fsmStep(t, f, &idx, beginPromotion{Server: 1, Epoch: 2, From: 1},
		choosePromotion{Server: 1, Epoch: 2, Main: nA, Planned: true})
	g, _ := f.group(1)
	if g.Main != nA || g.Pending == nil || !slices.Contains(g.Pending.Voters, 1) || slices.Contains(g.Pending.Voters, nA) {
		t.Fatalf("planned promote to A: main %d pending %v; want main A and a pending config with the old main 1 voting", g.Main, g.Pending)
	}
	runPlan(t, f, &idx, 1, promotedReports(g, true))
	g, _ = f.group(1)
	if !slices.Contains(g.Active.Voters, 1) || len(g.Active.Voters) != 3 {
		t.Fatalf("after the planned promote: active %v, want 3 voters with the old main", g.Active)
	}
}

// Case 14 (a): "S=2 gives zero write fault tolerance ... removeSibling from 3 to 2 is allowed
// and silently makes the group fragile." Fix: status warns when S=2.
func TestCase14A_TwoVotersAreWarnedInStatus(t *testing.T) {
	f, idx := threeVoters(t)
	warning := func() string {
		st, _ := f.view()
		s := buildStatus(statusInput{st: st, location: "default", reports: reportSet{},
			nodeState: func(nodeRecord) (string, uint64) { return command.NodeUp, 1 }})
		for _, g := range s.Groups {
			if g.Server == 1 {
				return g.Warning
			}
		}
		t.Fatal("group 1 missing from status")
		return ""
	}
	if w := warning(); w != "" {
		t.Fatalf("S=3 warned: %q", w)
	}
	fsmStep(t, f, &idx, removeSibling{Server: 1, Node: nC}, activate{Server: 1, Version: 5})
	if g, _ := f.group(1); len(g.Active.Voters) != 2 {
		t.Fatalf("after removing C: active %v", g.Active)
	}
	if w := warning(); w != twoVotersWarning {
		t.Fatalf("S=2 status warning %q, want %q", w, twoVotersWarning)
	}
}

// Case 14 (f): "A process whose clock stepped back produces instances that sort earlier, and
// its ads are ignored until the old ad's TTL runs out." Fix: order by (incarnation,
// generation); the instance ULID is identity only. A restart with a higher incarnation
// replaces the record even when its instance sorts lower, the recorded incarnation never decreases,
// and a heartbeat of a lower generation is not recorded.
func TestCase14F_RecordsOrderedByIncarnationNotInstance(t *testing.T) {
	f := newFSM()
	idx := uint64(1)
	first := joinNode{ID: 7, Addr: "127.0.0.1:1", Location: "default", Instance: "01JZZZZZZZZZZZZZZZZZZZZZZZ", Incarnation: 1}
	fsmStep(t, f, &idx, first)
	// Clock stepped back: the new instance's ULID sorts before the old one.
	back := joinNode{ID: 7, Addr: "127.0.0.1:2", Location: "default", Instance: "01J00000000000000000000000", Incarnation: 2}
	fsmStep(t, f, &idx, back)
	st, _ := f.view()
	if n := st.Nodes[7]; n.Instance != back.Instance || n.Addr != back.Addr || n.Incarnation != 2 {
		t.Fatalf("record after a restart with an earlier-sorting instance: %+v, want the new process", n)
	}
	// A join of another instance with a lower incarnation is taken for a node whose data
	// directory was wiped: it is recorded above the recorded incarnation, never below, so
	// the record's order only grows whatever the ULIDs say.
	if err := applyAt(t, f, idx, first); err != nil {
		t.Fatalf("join of a lower incarnation from another instance: %v", err)
	}
	idx++
	st, _ = f.view()
	if n := st.Nodes[7]; n.Incarnation != 3 {
		t.Fatalf("record after a join of incarnation 1 over 2: incarnation %d, want 3", n.Incarnation)
	}
	// Heartbeats of one process are ordered by generation.
	now := time.Unix(1700000000, 0)
	term := newLeaderTerm(now)
	if !term.noteHeartbeat(command.Heartbeat{Node: 7, Instance: first.Instance, Incarnation: 3, Generation: 5}, now) {
		t.Fatal("first heartbeat not recorded")
	}
	if term.noteHeartbeat(command.Heartbeat{Node: 7, Instance: first.Instance, Incarnation: 3, Generation: 4}, now) {
		t.Fatal("a heartbeat of a lower generation was recorded")
	}
}
