package location

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// staleGroup is group 1 with main 1 and voting siblings voters (copy IDs "copy-1-N").
func staleGroup(voters ...uint16) command.GroupInfo {
	g := command.GroupInfo{Server: 1, Epoch: 1, Main: 1, Active: command.Config{Version: 4, Voters: voters}}
	for _, v := range voters {
		g.Siblings = append(g.Siblings, command.Member{Node: v, State: command.SiblingVoting, CopyID: copyName(1, v)})
	}
	return g
}

func silentSet(nodes ...uint16) silentFunc {
	return func(node, server uint16) bool { return slices.Contains(nodes, node) }
}

func upSet(nodes ...uint16) map[uint16]bool {
	out := map[uint16]bool{}
	for _, n := range nodes {
		out[n] = true
	}
	return out
}

func sibReport(node uint16, copyID string) reportSet {
	return reportSet{node: {1: {Server: 1, Role: command.RoleSibling, Epoch: 1, CopyID: copyID}}}
}

func TestPlanDemotion(t *testing.T) {
	pending := staleGroup(2, 3, 4)
	pending.Pending = &command.Config{Version: 5, Voters: []uint16{2, 3}}
	sealing := staleGroup(2, 3, 4)
	sealing.Promotion = &command.Promotion{Epoch: 2, Phase: command.PromotionSealing, From: 1}
	noRecord := staleGroup(2, 3, 4)
	noRecord.Siblings[0].CopyID = ""
	cases := []struct {
		name        string
		g           command.GroupInfo
		up          map[uint16]bool
		reports     reportSet
		silent      silentFunc
		want        dirCommand
		wantBlocked []uint16
	}{
		{name: "nobody silent", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3, 4)},
		{name: "one of three silent, its node down", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3), silent: silentSet(4),
			want: demote{Server: 1, Nodes: []uint16{4}, To: command.SiblingStale}},
		{name: "one of three silent, its node up but not reporting the copy", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3, 4), silent: silentSet(4),
			want: demote{Server: 1, Nodes: []uint16{4}, To: command.SiblingStale}},
		{name: "two of five silent: demoted together", g: staleGroup(2, 3, 4, 5, 6), up: upSet(1, 2, 3, 4), silent: silentSet(5, 6),
			want: demote{Server: 1, Nodes: []uint16{5, 6}, To: command.SiblingStale}},
		// {2,3,4} with 3 and 4 silent: W of the active config (2) has one live voter, so the
		// joint quorum could never activate the change: they stay and are flagged.
		{name: "two of three silent: W impossible", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3, 4), silent: silentSet(3, 4),
			wantBlocked: []uint16{3, 4}},
		// The only voter of S=1: the group has no write quorum without it.
		{name: "the only voter silent", g: staleGroup(2), up: upSet(1), silent: silentSet(2), wantBlocked: []uint16{2}},
		// {2,3,4}, 4 silent, 3 down too: {2,3} would need both.
		{name: "a remaining voter is down", g: staleGroup(2, 3, 4), up: upSet(1, 2), silent: silentSet(4), wantBlocked: []uint16{4}},
		{name: "main down", g: staleGroup(2, 3, 4), up: upSet(2, 3), silent: silentSet(4), wantBlocked: []uint16{4}},
		{name: "a config is pending", g: pending, up: upSet(1, 2, 3), silent: silentSet(4)},
		{name: "a promotion is sealing", g: sealing, up: upSet(1, 2, 3), silent: silentSet(4)},
		// Case 5 D: another copy ID is demoted to syncing whatever W becomes.
		{name: "amnesiac voter", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3, 4), reports: sibReport(3, "new-disk"),
			want: demote{Server: 1, Nodes: []uint16{3}, To: command.SiblingSyncing}},
		{name: "amnesiac only voter", g: staleGroup(2), up: upSet(1, 2), reports: sibReport(2, "new-disk"),
			want: demote{Server: 1, Nodes: []uint16{2}, To: command.SiblingSyncing}},
		{name: "amnesia before staleness", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3), reports: sibReport(3, ""), silent: silentSet(4),
			want: demote{Server: 1, Nodes: []uint16{3}, To: command.SiblingSyncing}},
		{name: "same copy ID is not amnesia", g: staleGroup(2, 3, 4), up: upSet(1, 2, 3, 4), reports: sibReport(3, copyName(1, 3))},
		{name: "no recorded copy ID", g: noRecord, up: upSet(1, 2, 3, 4), reports: sibReport(2, "whatever")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, blocked := planDemotion(&tc.g, tc.up, tc.reports, tc.silent)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(blocked, tc.wantBlocked) {
				t.Fatalf("planDemotion = %+v, blocked %v; want %+v, blocked %v", got, blocked, tc.want, tc.wantBlocked)
			}
		})
	}
}

func TestPlanRevivals(t *testing.T) {
	stale := func(staleID string) command.GroupInfo {
		g := staleGroup(2, 3)
		g.Siblings = append(g.Siblings, command.Member{Node: 4, State: command.SiblingStale, StaleCopyID: staleID})
		return g
	}
	revive := []dirCommand{reviveStale{Server: 1, Node: 4}}
	resyncing := sibReport(4, "fresh")
	r := resyncing[4][1]
	r.Resyncing = true
	resyncing[4][1] = r
	cases := []struct {
		name    string
		g       command.GroupInfo
		up      map[uint16]bool
		reports reportSet
		want    []dirCommand
	}{
		{name: "still the stale copy", g: stale("old"), up: upSet(1, 4), reports: sibReport(4, "old")},
		{name: "rebuilt with a new copy ID", g: stale("old"), up: upSet(1, 4), reports: sibReport(4, "fresh"), want: revive},
		{name: "node down", g: stale("old"), up: upSet(1), reports: sibReport(4, "fresh")},
		{name: "not heard in this term", g: stale("old"), up: upSet(1, 4), reports: reportSet{}},
		{name: "heartbeats without the group", g: stale("old"), up: upSet(1, 4),
			reports: reportSet{4: {9: {Server: 9, Role: command.RoleSibling}}}, want: revive},
		{name: "no stale ID recorded: a plain report is not proof of a wipe", g: stale(""), up: upSet(1, 4), reports: sibReport(4, "fresh")},
		{name: "no stale ID recorded: a resyncing copy is", g: stale(""), up: upSet(1, 4), reports: resyncing, want: revive},
		{name: "no copy ID reported", g: stale("old"), up: upSet(1, 4), reports: sibReport(4, "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := planRevivals(&tc.g, tc.up, tc.reports); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("planRevivals = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A learner that was stale is proposed as a voter only once its node reports a rebuilt
// copy (another ID, not resyncing); a resyncing copy never is.
func TestPlanProposesOnlyFreshCopies(t *testing.T) {
	d := dir(2)
	d.Groups[0].Siblings = []command.Member{{Node: 2, State: command.SiblingSyncing, StaleCopyID: "old"}}
	d.Groups[1].Siblings = []command.Member{{Node: 1, State: command.SiblingVoting}}
	d.Groups[1].Active = command.Config{Version: 2, Voters: []uint16{1}}
	main := mainRep(1, 1000, 1, command.SiblingProgress{Node: 2, Seq: 1000, Recent: true})
	propose := []dirCommand{proposeVoter{Server: 1, Node: 2}}
	for _, tc := range []struct {
		name string
		sib  *command.GroupReport
		want []dirCommand
	}{
		{name: "no report from the learner"},
		{name: "the old copy", sib: &command.GroupReport{Server: 1, Role: command.RoleSibling, CopyID: "old"}},
		{name: "resyncing", sib: &command.GroupReport{Server: 1, Role: command.RoleSibling, CopyID: "new", Resyncing: true}},
		{name: "rebuilt", sib: &command.GroupReport{Server: 1, Role: command.RoleSibling, CopyID: "new"}, want: propose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports := reportSet{1: {1: main}}
			if tc.sib != nil {
				reports[2] = map[uint16]command.GroupReport{1: *tc.sib}
			}
			if got := planRound(d, reports, nil); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The whole life of a stale copy through the FSM: demoted by a pending config (still a
// voter of the active one), stale on activation with its copy ID kept aside, revived as a
// learner, voting again with the new copy ID.
func TestFSMStaleLifecycle(t *testing.T) {
	f, idx := threeVoters(t) // group 1: main 1, voters 2 (copy-2), 3, 4
	apply := func(c dirCommand) {
		t.Helper()
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s %+v: %v", c.kind(), c, err)
		}
		idx++
	}
	refused := func(c dirCommand) {
		t.Helper()
		if err := applyAt(t, f, idx, c); err == nil {
			t.Fatalf("%s %+v was accepted", c.kind(), c)
		}
		idx++
	}
	refused(demote{Server: 1, Nodes: []uint16{1}, To: command.SiblingStale})    // the main
	refused(demote{Server: 1, Nodes: []uint16{2}, To: command.SiblingVoting})   // no such target
	refused(demote{Server: 1, Nodes: []uint16{2, 2}, To: command.SiblingStale}) // twice
	refused(demote{Server: 1, To: command.SiblingStale})                        // nobody
	refused(reviveStale{Server: 1, Node: 2})                                    // not stale

	apply(demote{Server: 1, Nodes: []uint16{2}, To: command.SiblingStale})
	g, _ := f.group(1)
	if g.Pending == nil || !reflect.DeepEqual(g.Pending.Voters, []uint16{3, 4}) || !slices.Contains(g.Active.Voters, 2) {
		t.Fatalf("after demote: active %v pending %v; want 2 still in the active config, pending {3,4}", g.Active, g.Pending)
	}
	if m := member(&g, 2); m.State != command.SiblingVoting || m.Demote != command.SiblingStale {
		t.Fatalf("member during the joint phase %+v", m)
	}
	refused(demote{Server: 1, Nodes: []uint16{3}, To: command.SiblingStale}) // one change at a time
	refused(removeSibling{Server: 1, Node: 3})

	apply(activate{Server: 1, Version: g.Pending.Version})
	g, _ = f.group(1)
	m := member(&g, 2)
	if m == nil || m.State != command.SiblingStale || m.StaleCopyID != "copy-2" || m.CopyID != "" || m.Demote != "" {
		t.Fatalf("member after activation %+v; want stale with staleCopyId copy-2", m)
	}
	if slices.Contains(g.Voters(), 2) {
		t.Fatalf("stale member still votes: %v", g.Voters())
	}
	refused(proposeVoter{Server: 1, Node: 2}) // stale is not syncing
	refused(addLearner{Server: 1, Node: 2})   // it holds a (stale) copy

	apply(reviveStale{Server: 1, Node: 2})
	g, _ = f.group(1)
	if m := member(&g, 2); m.State != command.SiblingSyncing || m.StaleCopyID != "copy-2" {
		t.Fatalf("revived member %+v; want syncing, stale copy ID kept", m)
	}
	apply(proposeVoter{Server: 1, Node: 2})
	g, _ = f.group(1)
	apply(activate{Server: 1, Version: g.Pending.Version, CopyIDs: []copyID{{Node: 2, CopyID: "copy-2b"}}})
	g, _ = f.group(1)
	if m := member(&g, 2); m.State != command.SiblingVoting || m.CopyID != "copy-2b" || m.StaleCopyID != "" {
		t.Fatalf("member voting again %+v; want copy-2b and no stale ID", m)
	}
	if len(g.Siblings) != 3 {
		t.Fatalf("siblings %+v", g.Siblings)
	}
}

// Case 5 D through the FSM: an amnesiac voter becomes a learner on activation (its old copy
// ID forgotten) and votes again with its new one.
func TestFSMAmnesiacDemotion(t *testing.T) {
	f, idx := threeVoters(t)
	for _, c := range []dirCommand{
		demote{Server: 1, Nodes: []uint16{2}, To: command.SiblingSyncing},
		activate{Server: 1, Version: 5},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	g, _ := f.group(1)
	if m := member(&g, 2); m.State != command.SiblingSyncing || m.CopyID != "" || m.StaleCopyID != "" || slices.Contains(g.Voters(), 2) {
		t.Fatalf("amnesiac member %+v, voters %v; want a learner without copy IDs", m, g.Voters())
	}
	// A removal in the same shape still removes.
	if err := applyAt(t, f, idx, removeSibling{Server: 1, Node: 3}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx+1, activate{Server: 1, Version: 6}); err != nil {
		t.Fatal(err)
	}
	g, _ = f.group(1)
	if member(&g, 3) != nil || member(&g, 2) == nil {
		t.Fatalf("siblings after removing 3: %+v", g.Siblings)
	}
}

// The copy clock starts at the term's start: a new leader demotes nobody before it watched
// for copy-timeout itself, and a report resets a copy's clock.
func TestCopyClockStartsAtLeadership(t *testing.T) {
	start := time.Unix(1000, 0)
	term := newLeaderTerm(start)
	timeout := 10 * time.Minute
	if term.copyClock(start.Add(timeout), timeout)(2, 1) {
		t.Fatal("a copy never reported was silent exactly at copy-timeout after the term started")
	}
	if !term.copyClock(start.Add(timeout+time.Second), timeout)(2, 1) {
		t.Fatal("a copy never reported in the term was not silent after copy-timeout")
	}
	term.noteHeartbeat(command.Heartbeat{Node: 2, Generation: 1, Groups: []command.GroupReport{{Server: 1}}}, start.Add(5*time.Minute))
	clock := term.copyClock(start.Add(timeout+time.Second), timeout)
	if clock(2, 1) {
		t.Fatal("a copy reported 5 minutes in was silent at 10m1s")
	}
	if !clock(2, 7) {
		t.Fatal("another group of the same node counted as reported")
	}
	// A heartbeat that leaves the group out does not refresh it.
	term.noteHeartbeat(command.Heartbeat{Node: 2, Generation: 2}, start.Add(14*time.Minute))
	if !term.copyClock(start.Add(15*time.Minute+time.Second), timeout)(2, 1) {
		t.Fatal("heartbeats without the group kept the copy alive")
	}
}

func TestStatusShowsStaleAndUnreachable(t *testing.T) {
	f, idx := threeVoters(t) // voters 2, 3, 4
	for _, c := range []dirCommand{
		join(5), addLearner{Server: 1, Node: 5}, proposeVoter{Server: 1, Node: 5}, activate{Server: 1, Version: 5},
		demote{Server: 1, Nodes: []uint16{2}, To: command.SiblingStale}, activate{Server: 1, Version: 6},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	st, _ := f.view()
	// Voters {3,4,5}; 4 and 5 silent: demoting them would leave 3 alone against W=2.
	got := buildStatus(statusInput{
		st: st, location: "default", reports: reportSet{},
		nodeState: func(nodeRecord) (string, uint64) { return command.NodeUp, 0 },
		silent:    silentSet(4, 5),
	})
	sibs := got.Groups[0].Siblings
	want := []command.StatusSibling{
		{Node: 2, State: "syncing", Stale: true}, {Node: 3, State: "voting"},
		{Node: 4, State: "voting", Unreachable: true}, {Node: 5, State: "voting", Unreachable: true},
	}
	if !reflect.DeepEqual(sibs, want) {
		t.Fatalf("siblings %+v\nwant %+v", sibs, want)
	}
	if w := got.Groups[0].Warning; w == "" {
		t.Fatal("no warning for the copies that could not be demoted")
	}
}
