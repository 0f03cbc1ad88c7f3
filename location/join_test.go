package location

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

func TestJoinIncarnation(t *testing.T) {
	old := nodeRecord{ID: 1, Instance: "a", Incarnation: 5}
	cases := []struct {
		name               string
		instance           string
		inc                uint64
		want               uint64
		restarted, wipedTo bool
	}{
		{name: "same process again", instance: "a", inc: 5, want: 5},
		{name: "same process, join sent before it adopted a raised incarnation", instance: "a", inc: 1, want: 5},
		{name: "restart", instance: "b", inc: 6, want: 6, restarted: true},
		{name: "restart far ahead", instance: "b", inc: 40, want: 40, restarted: true},
		{name: "wiped data directory", instance: "b", inc: 1, want: 6, restarted: true, wipedTo: true},
		{name: "same incarnation, other instance", instance: "b", inc: 5, want: 6, restarted: true, wipedTo: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inc, restarted, wiped := joinIncarnation(old, joinNode{ID: 1, Instance: tc.instance, Incarnation: tc.inc})
			if inc != tc.want || restarted != tc.restarted || wiped != tc.wipedTo {
				t.Fatalf("joinIncarnation = %d, restarted %v, wiped %v; want %d, %v, %v", inc, restarted, wiped, tc.want, tc.restarted, tc.wipedTo)
			}
		})
	}
}

// A node whose data directory was wiped starts at incarnation 1 with a new instance: its
// join is accepted with an incarnation above the recorded one. As main of a group with
// voters it would overwrite their logs from an empty copy, so the group loses its main
// (a promotion follows) and the node becomes a learner; as main of a group without voters
// it carries on in a new epoch, as any restarted main.
func TestFSMWipedNodeRejoins(t *testing.T) {
	f, idx := buildFSM(t) // group 1: main 1, voter 2, 3 pending; groups 2, 3 without voters
	g1, _ := f.group(1)
	g2, _ := f.group(2)
	wiped := joinNode{ID: 1, Addr: "127.0.0.1:1", Location: "default", Instance: "fresh", Incarnation: 1}
	if err := applyAt(t, f, idx, wiped); err != nil {
		t.Fatalf("join of a wiped node refused: %v", err)
	}
	n, _ := f.node(1)
	if n.Instance != "fresh" || n.Incarnation != 2 {
		t.Fatalf("node 1 after a wiped rejoin: %+v; want instance fresh, incarnation 2", n)
	}
	after, _ := f.group(1)
	want := g1
	want.Main = 0
	// Its copy as main was never recorded: the learner gets an ID no copy has, so the
	// new, empty copy's seals are never counted for it.
	want.Siblings = append(want.Siblings, command.Member{Node: 1, State: command.SiblingSyncing, CopyID: "lost-at-incarnation-2"})
	if !reflect.DeepEqual(after, want) {
		t.Fatalf("group 1 after its main was wiped:\n got %+v\nwant %+v", after, want)
	}
	// The node retries its join (the answer was lost) with its own incarnation: accepted,
	// nothing changes.
	if err := applyAt(t, f, idx+1, wiped); err != nil {
		t.Fatalf("retried join refused: %v", err)
	}
	if n, _ := f.node(1); n.Incarnation != 2 {
		t.Fatalf("retried join moved the incarnation to %d", n.Incarnation)
	}
	// Node 2 (main of group 2, no voters) is wiped too: new epoch, still main.
	if err := applyAt(t, f, idx+2, joinNode{ID: 2, Addr: "x", Location: "default", Instance: "fresh2", Incarnation: 1}); err != nil {
		t.Fatal(err)
	}
	if g, _ := f.group(2); g.Main != 2 || g.Epoch != g2.Epoch+1 {
		t.Fatalf("group 2 after its voter-less main was wiped: %+v", g)
	}
	// Group 1 can be promoted from "no main".
	g, _ := f.group(1)
	if err := applyAt(t, f, idx+3, beginPromotion{Server: 1, Epoch: g.NextEpoch(), From: 0}); err != nil {
		t.Fatalf("promotion of a group without main refused: %v", err)
	}
	if err := applyAt(t, f, idx+4, choosePromotion{Server: 1, Epoch: g.NextEpoch(), Main: 2}); err != nil {
		t.Fatalf("choice refused: %v", err)
	}
	g, _ = f.group(1)
	if g.Main != 2 || member(&g, 1) == nil || member(&g, 1).State != command.SiblingSyncing {
		t.Fatalf("group 1 after promotion: %+v", g)
	}
}

// Over HTTP with real raft: a node restarted on a wiped data directory (new instance,
// incarnation 1 again) is let in with a raised incarnation, heartbeats with it, and, as
// main of a group with voters, is made a learner while the group waits for a promotion.
func TestClusterWipedNodeRejoins(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.leader(10 * time.Second)
	var nodes []*fakeNode
	for i := uint16(1); i <= 3; i++ {
		n := &fakeNode{id: i, instance: fmt.Sprintf("inst-%d", i), ctls: tc.httpAddrs()}
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	eventuallyOK(t, 30*time.Second, "group 1 with a voter", func() error {
		for _, n := range nodes {
			if err := n.heartbeat(); err != nil {
				return err
			}
		}
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if g := d.Group(1); g == nil || len(g.Active.Voters) == 0 {
			return fmt.Errorf("group 1: %+v", g)
		}
		return nil
	})
	d, _ := tc.directory()
	before := *d.Group(1)

	// Node 1's disk is wiped: a new process, incarnation 1, new copy IDs.
	wiped := &fakeNode{id: 1, instance: "inst-1-wiped", ctls: tc.httpAddrs(), disk: "-wiped"}
	if err := wiped.join(); err != nil {
		t.Fatalf("join of the wiped node: %v", err)
	}
	if inc := wiped.incarnation(); inc != 2 {
		t.Fatalf("wiped node's incarnation %d, want 2 (recorded 1 + 1)", inc)
	}
	if err := wiped.heartbeat(); err != nil {
		t.Fatalf("heartbeat with the adopted incarnation: %v", err)
	}
	// The old process's heartbeats are refused now.
	if _, err := nodes[0].send(pathHeartbeat, command.Heartbeat{Node: 1, Instance: "inst-1", Incarnation: 1, Generation: 99}); err == nil {
		t.Fatal("the replaced instance's heartbeat was accepted")
	}
	d, err := tc.directory()
	if err != nil {
		t.Fatal(err)
	}
	g := d.Group(1)
	if g.Main != 0 || member(g, 1) == nil || member(g, 1).State != command.SiblingSyncing {
		t.Fatalf("group 1 after its main's disk was wiped: %+v (before %+v)", g, before)
	}
	if n := d.NodeByID(1); n.Instance != "inst-1-wiped" || n.Incarnation != 2 {
		t.Fatalf("node 1 record %+v", n)
	}
	// A promotion is attempted (the fake siblings answer no seals, so it is abandoned).
	eventuallyOK(t, 10*time.Second, "a promotion attempt for group 1", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if p := d.Group(1).Promotion; p == nil || p.From != 0 {
			return fmt.Errorf("promotion %+v", p)
		}
		return nil
	})
}
