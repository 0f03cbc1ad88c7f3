package location

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

func TestBuildStatus(t *testing.T) {
	f, idx := buildFSM(t)
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	st, _ := f.view()
	st.Groups[3].Main = 0 // a group without a main
	reports := reportSet{
		1: {1: mainRep(1, 100, 3, command.SiblingProgress{Node: 2, Seq: 90, Recent: true}, command.SiblingProgress{Node: 3, Seq: 80})},
		3: {1: {Server: 1, Role: command.RoleSibling, Epoch: 1, Applied: 97}},
	}
	got := buildStatus(statusInput{
		st: st, location: "default", leader: "c1", reports: reports,
		members: []raftMember{{ID: "c1", Addr: "r1"}, {ID: "c2", Addr: "r2"}},
		nodeState: func(n nodeRecord) (string, uint64) {
			return map[uint16]string{1: "up", 2: "up", 3: "down"}[n.ID], uint64(n.ID) * 10
		},
	})
	one := uint16(1)
	want := command.Status{
		Locations: []command.StatusLocation{{Name: "default", Controllers: []string{"c1", "c2"}, Leader: ptr("c1"), Reachable: true}},
		Controllers: []command.StatusController{
			{ID: "c1", Addr: "h1", Location: "default", Leader: true},
			{ID: "c2", Addr: "", Location: "default"},
		},
		Nodes: []command.StatusNode{
			{ID: 1, Addr: "127.0.0.1:1", Location: "default", State: "up", Instance: "inst", Generation: 10},
			{ID: 2, Addr: "127.0.0.1:1", Location: "default", State: "up", Instance: "inst", Generation: 20},
			{ID: 3, Addr: "127.0.0.1:1", Location: "default", State: "down", Instance: "inst", Generation: 30},
		},
		Groups: []command.StatusGroup{
			{Server: 1, Home: "default", Main: &one, Epoch: 1, Seq: 100, Warning: twoVotersWarning, Siblings: []command.StatusSibling{
				{Node: 2, State: "voting", LagSeq: 10}, // main's view: the sibling did not report
				{Node: 3, State: "voting", LagSeq: 3},  // the sibling's own applied seq
			}},
			{Server: 2, Home: "default", Main: ptr(uint16(2)), Epoch: 1, Siblings: []command.StatusSibling{}},
			{Server: 3, Home: "default", Main: nil, Epoch: 1, Siblings: []command.StatusSibling{}},
		},
		Promotions: []command.StatusPromotion{}, Operations: []command.StatusOperation{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status\n got %+v\nwant %+v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// TestStatusOperations: a registration shows sync until the copy holds something, the
// snapshot's bytes while one is sent, the log replay's entries after, and "vote" once caught up; a drain shows its own steps; the
// main's load is passed on.
func TestStatusOperations(t *testing.T) {
	f, idx := buildFSM(t)
	fsmStep(t, f, &idx, activate{Server: 1, Version: 3}, join(4), addLearner{Server: 1, Node: 4})
	st, _ := f.view()
	started := time.UnixMilli(1_700_000_000_000)
	var ops operations
	_, endReg := ops.start(operation{op: command.OperationRegister, server: 1, node: 4, started: started})
	drain, _ := ops.start(operation{op: command.OperationDrain, node: 3, started: started, phase: "promote", total: 2})
	ops.step(drain, "move", 1, 2)
	load := &command.GroupLoad{EndS: 5, Commits: make([]uint32, 60), P99Ms: make([]float64, 60), Rate: 3, MinuteP99Ms: 2}
	build := func(p command.SiblingProgress, applied uint64) command.Status {
		rep := mainRep(1, 1000, 3, command.SiblingProgress{Node: 2, Seq: 1000, Recent: true}, command.SiblingProgress{Node: 3, Seq: 1000, Recent: true}, p)
		rep.Load = load
		return buildStatus(statusInput{
			st: st, location: "default", leader: "c1", ops: ops.list(),
			reports:   reportSet{1: {1: rep}, 4: {1: {Server: 1, Role: command.RoleSibling, Epoch: 1, Applied: applied}}},
			nodeState: func(n nodeRecord) (string, uint64) { return command.NodeUp, 1 },
		})
	}
	s := build(command.SiblingProgress{Node: 4, SyncDone: 300, SyncTotal: 1200}, 0)
	want := []command.StatusOperation{
		{Op: command.OperationRegister, Server: 1, Node: 4, StartedMs: started.UnixMilli(), Phase: "sync", Done: 300, Total: 1200, Unit: "bytes"},
		{Op: command.OperationDrain, Node: 3, StartedMs: started.UnixMilli(), Phase: "move", Done: 1, Total: 2, Unit: "groups"},
	}
	if !reflect.DeepEqual(s.Operations, want) {
		t.Fatalf("operations while syncing\n got %+v\nwant %+v", s.Operations, want)
	}
	if s.Groups[0].Load != load {
		t.Fatalf("group 1 load %+v, want the main's report", s.Groups[0].Load)
	}
	if r := build(command.SiblingProgress{Node: 4}, 0).Operations[0]; r.Phase != "sync" || r.Done != 0 || r.Unit != "bytes" {
		t.Fatalf("operation before the copy holds anything: %+v, want sync at 0 bytes", r)
	}
	if r := build(command.SiblingProgress{Node: 4, Seq: 400}, 400).Operations[0]; r.Phase != "replay" || r.Done != 400 || r.Total != 1000 || r.Unit != "entries" {
		t.Fatalf("operation while replaying: %+v, want replay 400 of 1000 entries", r)
	}
	if r := build(command.SiblingProgress{Node: 4, Seq: 990}, 990).Operations[0]; r.Phase != "vote" {
		t.Fatalf("operation once caught up: %+v, want vote", r)
	}
	endReg()
	if l := ops.list(); len(l) != 1 || l[0].op != command.OperationDrain {
		t.Fatalf("after the registration ended: %+v, want the drain alone", l)
	}
}

// TestBuildStatusOtherLocations: the locations the ads show are listed with their leader
// and reachability, their controllers and nodes (up while their ad is fresh) beside this
// location's.
func TestBuildStatusOtherLocations(t *testing.T) {
	f, _ := buildFSM(t)
	st, _ := f.view()
	got := buildStatus(statusInput{
		st: st, location: "default", leader: "c1", reports: reportSet{}, nodeFresh: 3 * time.Second,
		members:   []raftMember{{ID: "c1", Addr: "r1"}},
		nodeState: func(n nodeRecord) (string, uint64) { return "up", 1 },
		remote: []locationView{
			{Name: "a-far", Reachable: true, LeaderID: "c9", LeaderAddr: "h9",
				Controllers: []command.Ad{ctlAd("c9", "a-far", "C9", 1, 1)},
				Nodes:       []command.Ad{{Kind: command.AdNode, ID: "20", Location: "a-far", Addr: "n20", Instance: "N20", Incarnation: 1, Generation: 7, AgeMs: 500}}},
			{Name: "z-far", Controllers: []command.Ad{ctlAd("c20", "z-far", "C20", 1, 1)},
				Nodes: []command.Ad{{Kind: command.AdNode, ID: "40", Location: "z-far", Addr: "n40", Instance: "N40", Incarnation: 1, Generation: 3, AgeMs: 9000}}},
		},
	})
	wantLocs := []command.StatusLocation{
		{Name: "a-far", Controllers: []string{"c9"}, Leader: ptr("c9"), Reachable: true},
		{Name: "default", Controllers: []string{"c1"}, Leader: ptr("c1"), Reachable: true},
		{Name: "z-far", Controllers: []string{"c20"}},
	}
	if !reflect.DeepEqual(got.Locations, wantLocs) {
		t.Fatalf("locations %+v\nwant %+v", got.Locations, wantLocs)
	}
	var ctrls, nodes []string
	for _, c := range got.Controllers {
		ctrls = append(ctrls, fmt.Sprintf("%s/%s/%v", c.Location, c.ID, c.Leader))
	}
	for _, n := range got.Nodes {
		nodes = append(nodes, fmt.Sprintf("%d/%s/%s", n.ID, n.Location, n.State))
	}
	if want := []string{"a-far/c9/true", "default/c1/true", "z-far/c20/false"}; !reflect.DeepEqual(ctrls, want) {
		t.Fatalf("controllers %v, want %v", ctrls, want)
	}
	if want := []string{"1/default/up", "2/default/up", "3/default/up", "20/a-far/up", "40/z-far/down"}; !reflect.DeepEqual(nodes, want) {
		t.Fatalf("nodes %v: want node 20 of a-far up (fresh ad) and node 40 of z-far down (9 s old), in ID order", nodes)
	}
	for _, g := range got.Groups {
		if g.Home != "default" {
			t.Fatalf("group %d home %q", g.Server, g.Home)
		}
	}
}
