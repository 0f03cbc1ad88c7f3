package location

import (
	"reflect"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// dir builds a directory of nodes 1..n, all up unless listed in down, each main of its own
// empty group.
func dir(n int, down ...uint16) command.Directory {
	var d command.Directory
	for i := 1; i <= n; i++ {
		id := uint16(i)
		state := command.NodeUp
		for _, x := range down {
			if x == id {
				state = command.NodeDown
			}
		}
		d.Nodes = append(d.Nodes, command.NodeInfo{ID: id, State: state})
		d.Groups = append(d.Groups, command.GroupInfo{Server: id, Epoch: 1, Main: id, Active: command.Config{Version: 1}})
	}
	return d
}

func TestPlanAddsOneLearnerPerGroupSpreadingCopies(t *testing.T) {
	got := planRound(dir(4), reportSet{}, nil)
	// Copies start at 1 per node (its own group); each pick raises the count, so the
	// learners spread: group 1 gets 2, group 2 gets 1, group 3 gets 4, group 4 gets 3.
	want := []dirCommand{
		addLearner{Server: 1, Node: 2},
		addLearner{Server: 2, Node: 1},
		addLearner{Server: 3, Node: 4},
		addLearner{Server: 4, Node: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
}

func TestPlanTargetFollowsUpNodes(t *testing.T) {
	// Two nodes up: target min(3, 2-1) = 1. Node 3 is down: its group is skipped and it gets
	// no copies.
	d := dir(3, 3)
	d.Groups[0].Siblings = []command.Member{{Node: 2, State: command.SiblingSyncing}}
	got := planRound(d, reportSet{}, nil)
	want := []dirCommand{addLearner{Server: 2, Node: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	// A single node has nothing to replicate to.
	if got := planRound(dir(1), reportSet{}, nil); len(got) != 0 {
		t.Fatalf("single node plan %+v", got)
	}
	// Spare nodes neither count nor receive copies.
	d = dir(3)
	d.Nodes[2].State = command.NodeSpare
	got = planRound(d, reportSet{}, nil)
	want = []dirCommand{addLearner{Server: 1, Node: 2}, addLearner{Server: 2, Node: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan with a spare %+v, want %+v", got, want)
	}
}

func mainRep(server uint16, lastSeq uint64, activated uint64, sibs ...command.SiblingProgress) command.GroupReport {
	return command.GroupReport{Server: server, Role: command.RoleMain, Epoch: 1, LastSeq: lastSeq, Siblings: sibs, Activated: activated}
}

func TestPlanProposesCaughtUpLearner(t *testing.T) {
	d := dir(2)
	d.Groups[0].Siblings = []command.Member{{Node: 2, State: command.SiblingSyncing}}
	d.Groups[1].Siblings = []command.Member{{Node: 1, State: command.SiblingSyncing}}
	reports := reportSet{
		1: {1: mainRep(1, 1000, 1, command.SiblingProgress{Node: 2, Seq: 936, Recent: true})},
		2: {2: mainRep(2, 1000, 1, command.SiblingProgress{Node: 1, Seq: 935, Recent: true})},
	}
	got := planRound(d, reports, nil)
	want := []dirCommand{proposeVoter{Server: 1, Node: 2}} // group 2's learner is 65 behind
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	// Not recent, or a report from another epoch or role, proposes nothing.
	reports[1] = map[uint16]command.GroupReport{1: mainRep(1, 1000, 1, command.SiblingProgress{Node: 2, Seq: 1000})}
	if got := planRound(d, reports, nil); len(got) != 0 {
		t.Fatalf("plan for a silent learner %+v", got)
	}
	stale := mainRep(1, 1000, 1, command.SiblingProgress{Node: 2, Seq: 1000, Recent: true})
	stale.Epoch = 0
	reports[1] = map[uint16]command.GroupReport{1: stale}
	if got := planRound(d, reports, nil); len(got) != 0 {
		t.Fatalf("plan from a stale-epoch report %+v", got)
	}
}

func TestPlanActivatesAndRecordsCopyIDs(t *testing.T) {
	d := dir(3)
	g := &d.Groups[0]
	g.Siblings = []command.Member{{Node: 2, State: command.SiblingVoting}, {Node: 3, State: command.SiblingSyncing}}
	g.Active = command.Config{Version: 2, Voters: []uint16{2}}
	g.Pending = &command.Config{Version: 3, Voters: []uint16{2, 3}}
	for i := range d.Groups[1:] { // the other groups are complete
		d.Groups[i+1].Siblings = []command.Member{{Node: 9, State: command.SiblingVoting}, {Node: 8, State: command.SiblingVoting}}
	}
	sib := command.GroupReport{Server: 1, Role: command.RoleSibling, Epoch: 1, CopyID: "copy-3"}
	reports := reportSet{1: {1: mainRep(1, 10, 2, command.SiblingProgress{Node: 3, Seq: 10, Recent: true})}, 3: {1: sib}}
	if got := planRound(d, reports, nil); len(got) != 0 {
		t.Fatalf("plan before activation %+v (pending blocks another proposal)", got)
	}
	reports[1] = map[uint16]command.GroupReport{1: mainRep(1, 10, 3)}
	got := planRound(d, reports, nil)
	want := []dirCommand{activate{Server: 1, Version: 3, CopyIDs: []copyID{{Node: 3, CopyID: "copy-3"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
}

func TestPlanConvergesThroughFSM(t *testing.T) {
	// Drive planRound against a real FSM with reports that always show everyone caught up
	// and every pending config committed: every group must end with 3 voters.
	f := newFSM()
	idx := uint64(1)
	for i := uint16(1); i <= 5; i++ {
		if err := applyAt(t, f, idx, join(i)); err != nil {
			t.Fatal(err)
		}
		idx++
	}
	for round := 0; round < 20; round++ {
		st, _ := f.view()
		d := st.directory(func(nodeRecord) (string, uint64) { return command.NodeUp, 0 })
		reports := reportSet{}
		for _, g := range d.Groups {
			rep := mainRep(g.Server, 100, g.Active.Version)
			if g.Pending != nil {
				rep.Activated = g.Pending.Version
			}
			for _, m := range g.Siblings {
				rep.Siblings = append(rep.Siblings, command.SiblingProgress{Node: m.Node, Seq: 100, Recent: true})
			}
			reports[g.Main] = map[uint16]command.GroupReport{g.Server: rep}
		}
		for _, c := range planRound(d, reports, nil) {
			if err := applyAt(t, f, idx, c); err != nil {
				t.Fatalf("round %d: %s refused: %v", round, c.kind(), err)
			}
			idx++
		}
	}
	st, _ := f.view()
	copies := copiesHeld(st.sortedGroups(), nil)
	for _, g := range st.sortedGroups() {
		if len(g.Active.Voters) != 3 || g.Pending != nil || g.Active.Version != 4 {
			t.Fatalf("group %d did not converge: %+v", g.Server, g)
		}
	}
	// 5 groups x 4 copies (main + 3) over 5 nodes: the one-pick-per-group greedy spreads
	// them within one copy of even.
	for n, c := range copies {
		if c < 3 || c > 5 {
			t.Fatalf("node %d holds %d copies, want 3..5 (copies %v)", n, c, copies)
		}
	}
}

// With several locations, a group's first sibling goes to another location than its
// main's, whichever node holds fewer copies; later ones are spread as before.
func TestPlanPlacesASiblingOutsideTheMainsLocation(t *testing.T) {
	d := dir(4)
	for i := range d.Nodes {
		d.Nodes[i].Location = "loc1"
	}
	d.Nodes[3].Location = "loc2" // node 4
	d.Groups = d.Groups[:1]      // group 1, main 1 in loc1
	got := planRound(d, reportSet{}, nil)
	if want := []dirCommand{addLearner{Server: 1, Node: 4}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want the first learner in loc2: %+v", got, want)
	}
	// Once a copy lives in loc2, the fewest copies decide again (lowest ID on ties).
	d.Groups[0].Siblings = []command.Member{{Node: 4, State: command.SiblingSyncing}}
	got = planRound(d, reportSet{}, nil)
	if want := []dirCommand{addLearner{Server: 1, Node: 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	// A stale copy elsewhere does not count as one.
	d.Groups[0].Siblings = []command.Member{{Node: 4, State: command.SiblingStale}, {Node: 2, State: command.SiblingVoting}}
	d.Nodes = append(d.Nodes, command.NodeInfo{ID: 5, State: command.NodeUp, Location: "loc3"})
	got = planRound(d, reportSet{}, nil)
	if want := []dirCommand{addLearner{Server: 1, Node: 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	// One location: nothing changes (no node elsewhere to prefer).
	one := dir(4)
	one.Groups = one.Groups[:1]
	if got := planRound(one, reportSet{}, nil); !reflect.DeepEqual(got, []dirCommand{addLearner{Server: 1, Node: 2}}) {
		t.Fatalf("one location: plan %+v", got)
	}
}

// Placement counts the copies a node holds of other homes' groups too, as its heartbeats
// report them: of two nodes holding no copy of this home's groups, the one holding fewer
// copies of any home's is chosen.
func TestPlanCountsCopiesOfOtherHomes(t *testing.T) {
	d := dir(4)
	d.Groups = d.Groups[:1] // group 1, main 1; nodes 2, 3, 4 hold nothing of this home
	reports := reportSet{
		2: {7: {Server: 7}, 8: {Server: 8}}, // node 2 holds copies of groups 7 and 8, homed elsewhere
		3: {9: {Server: 9}},
	}
	got := planRound(d, reports, nil)
	if want := []dirCommand{addLearner{Server: 1, Node: 4}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want the node holding no copy of any home's group: %+v", got, want)
	}
	if c := copiesHeld(d.Groups, reports); c[1] != 1 || c[2] != 2 || c[3] != 1 || c[4] != 0 {
		t.Fatalf("copies held %v, want node 1: 1 (main of group 1), 2: 2, 3: 1, 4: 0", c)
	}
	// A report of a group this directory lists counts once.
	reports[1] = map[uint16]command.GroupReport{1: {Server: 1}}
	if c := copiesHeld(d.Groups, reports); c[1] != 1 {
		t.Fatalf("node 1 counted %d copies for its one group", c[1])
	}
}
