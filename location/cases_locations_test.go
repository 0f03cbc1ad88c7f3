package location

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 6 (docs/replication.md): a group whose copies span locations has exactly one
// authority, its home location's controllers. A node of another location joins as a guest:
// the home directory lists it, places copies on it and seals it, but the guest's own
// group is homed in its own location and is never created here; the directory names
// itself as every group's home, and only its next epoch can be opened.
func TestCase6_GuestNodesHoldCopiesUnderOneHome(t *testing.T) {
	tc := newTestCluster(t, 1, func(c *Config) { c.Location = "loc1" })
	lead := tc.leader(10 * time.Second)
	home := &fakeNode{id: 1, instance: "inst-1", ctls: tc.httpAddrs()}
	eventuallyOK(t, 10*time.Second, "node 1 joined", home.join)
	var d command.Directory
	code, body, err := call(http.MethodPost, lead.httpAddr, pathJoin,
		command.JoinRequest{ID: 9, Addr: "127.0.0.1:9", Location: "loc2", Instance: "inst-9", Incarnation: 1}, &d)
	if err != nil || code != http.StatusOK {
		t.Fatalf("join of a node of loc2: %d %s %v, want 200", code, body, err)
	}
	if n := d.NodeByID(9); n == nil || n.Location != "loc2" {
		t.Fatalf("the guest is not in the directory as a node of loc2: %+v", d.Nodes)
	}
	if d.Group(9) != nil {
		t.Fatal("a guest's own group was created in a location that is not its home")
	}
	if d.Location != "loc1" || d.Group(1) == nil || d.Group(1).Home != "loc1" {
		t.Fatalf("directory of %q, group 1 %+v: want loc1 named as the directory's location and group 1's home", d.Location, d.Group(1))
	}
	// The reconciler puts group 1's first sibling outside loc1: on the guest.
	eventuallyOK(t, 5*time.Second, "a copy of group 1 on the guest", func() error {
		g := lead.c.Directory()
		if gi := g.Group(1); gi == nil || siblingIndex(gi, 9) < 0 {
			return fmt.Errorf("group 1: %+v", gi)
		}
		return nil
	})
	// One server ID, one node: a second node 9 in another location is refused.
	code, _, _ = call(http.MethodPost, lead.httpAddr, pathJoin,
		command.JoinRequest{ID: 9, Addr: "127.0.0.1:19", Location: "loc3", Instance: "inst-9b", Incarnation: 1}, nil)
	if code != http.StatusBadRequest {
		t.Fatalf("node 9 joining again as a node of loc3: %d, want 400", code)
	}
	// Nor may a guest take the ID of a group homed here.
	code, _, _ = call(http.MethodPost, lead.httpAddr, pathJoin,
		command.JoinRequest{ID: 1, Addr: "127.0.0.1:11", Location: "loc2", Instance: "inst-1b", Incarnation: 1}, nil)
	if code != http.StatusBadRequest {
		t.Fatalf("node 1 joining as a guest of loc2: %d, want 400", code)
	}
	now := lead.c.Directory()
	g := now.Group(1)
	if _, err := lead.c.cons.propose(beginPromotion{Server: 1, Epoch: g.NextEpoch() + 1, From: 1}); err == nil {
		t.Fatal("an attempt at an epoch other than the directory's next one was opened")
	}
	// A guest's heartbeats are not its ads: its own location advertises it.
	eventuallyOK(t, 5*time.Second, "node 1's ad held", func() error {
		lead.c.gossip.mu.Lock()
		ads := lead.c.gossip.book.list(time.Now())
		lead.c.gossip.mu.Unlock()
		own := false
		for _, ad := range ads {
			if ad.Kind == command.AdNode && ad.ID == "9" {
				t.Fatalf("the guest's join became an ad of this location: %+v", ad)
			}
			own = own || (ad.Kind == command.AdNode && ad.ID == "1")
		}
		if !own {
			return fmt.Errorf("no ad of node 1 yet")
		}
		return nil
	})
}

// A promotion chooses among the copies with the longest log; among those, one in the
// group's home location, even over a lower node ID elsewhere; never a home copy that lacks
// an entry.
func TestPromotionPrefersTheHomeLocationAmongTheLongestLogs(t *testing.T) {
	home := func(n uint16) bool { return n == 5 || n == 6 }
	r := map[uint16]command.SealReply{
		2: {Node: 2, LastEpoch: 3, LastSeq: 40},
		5: {Node: 5, LastEpoch: 3, LastSeq: 40},
		6: {Node: 6, LastEpoch: 3, LastSeq: 40},
	}
	if got := chooseMainAt(r, home).Node; got != 5 {
		t.Fatalf("chose %d, want 5 (home, lowest ID among the home copies)", got)
	}
	if got := chooseMainAt(r, nil).Node; got != 2 {
		t.Fatalf("without a home preference chose %d, want 2", got)
	}
	r[2] = command.SealReply{Node: 2, LastEpoch: 3, LastSeq: 41}
	if got := chooseMainAt(r, home).Node; got != 2 {
		t.Fatalf("chose %d, want 2: it alone holds seq 41", got)
	}
	r[3] = command.SealReply{Node: 3, LastEpoch: 4, LastSeq: 1}
	if got := chooseMainAt(r, home).Node; got != 3 {
		t.Fatalf("chose %d, want 3: its last entry's epoch is the highest", got)
	}
}
