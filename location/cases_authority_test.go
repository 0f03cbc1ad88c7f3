package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 6: "Group g: M in L1. Siblings: A in L1; B, C and D in L2 ... L1 seals A and B at e+1
// and chooses A. L2 seals C and D at e+1 and chooses C": split brain. This deployment
// answers it by never letting a group span locations: a controller accepts only nodes of its
// own location, so every copy of a group is known to exactly one directory, whose raft
// cluster alone raises the group's epoch (the single home authority). The mechanism tested:
// a node of another location cannot join, so it can hold no copy (addLearner needs a node
// of this directory), and only the directory's next epoch can be opened for a promotion.
func TestCase6_GroupNeverSpansLocations(t *testing.T) {
	tc := newTestCluster(t, 1)
	lead := tc.leader(10 * time.Second)
	home := &fakeNode{id: 1, instance: "inst-1", ctls: tc.httpAddrs()}
	eventuallyOK(t, 10*time.Second, "node 1 joined", home.join)
	code, body, err := call(http.MethodPost, lead.httpAddr, pathJoin,
		command.JoinRequest{ID: 9, Addr: "127.0.0.1:9", Location: "elsewhere", Instance: "inst-9", Incarnation: 1}, nil)
	if err != nil || code != http.StatusBadRequest {
		t.Fatalf("join from another location: %d %s %v, want 400", code, body, err)
	}
	d := lead.c.Directory()
	if d.NodeByID(9) != nil {
		t.Fatalf("a node of another location is in the directory: %+v", d.Nodes)
	}
	if _, err := lead.c.cons.propose(addLearner{Server: 1, Node: 9}); err == nil {
		t.Fatal("a copy of group 1 was placed on a node this directory does not hold")
	}
	// Only the directory's next epoch can be opened: an authority that computed its own
	// epoch from another view is refused.
	g := d.Group(1)
	if _, err := lead.c.cons.propose(beginPromotion{Server: 1, Epoch: g.NextEpoch() + 1, From: 1}); err == nil {
		t.Fatal("an attempt at an epoch other than the directory's next one was opened")
	}
}

// Case 13 scenario B: "The old main asks a controller follower, gets the stale answer 'main
// of e', and acts as main." The rule: nodes ask only the leader; a follower never answers a
// role query (join, heartbeat, directory) itself but names the leader (421).
func TestCase13B_FollowersNeverAnswerRoleQueries(t *testing.T) {
	tc := newTestCluster(t, 3)
	lead := tc.leader(10 * time.Second)
	n := &fakeNode{id: 1, instance: "inst-1", ctls: tc.httpAddrs()}
	eventuallyOK(t, 10*time.Second, "node 1 joined", n.join)
	eventuallyOK(t, 10*time.Second, "followers hint the leader", func() error {
		lead = tc.currentLeader()
		if lead == nil {
			return fmt.Errorf("no leader")
		}
		for _, x := range tc.running() {
			if x == lead {
				continue
			}
			for _, req := range []struct {
				method, path string
				in           any
			}{
				{http.MethodPost, pathJoin, command.JoinRequest{ID: 1, Addr: "127.0.0.1:9001", Instance: "inst-1", Incarnation: 1}},
				{http.MethodPost, pathHeartbeat, command.Heartbeat{Node: 1, Instance: "inst-1", Incarnation: 1, Generation: 99}},
				{http.MethodGet, pathDirectory + "?after=0", nil},
			} {
				var d command.Directory
				code, body, err := call(req.method, x.httpAddr, req.path, req.in, &d)
				var hint command.LeaderHint
				_ = json.Unmarshal(body, &hint)
				if err != nil || code != http.StatusMisdirectedRequest || hint.Leader != lead.httpAddr {
					return fmt.Errorf("%s %s on follower %s: %d %s %v; want 421 naming %s", req.method, req.path, x.id, code, body, err, lead.httpAddr)
				}
				if len(d.Groups) != 0 {
					return fmt.Errorf("follower %s answered a directory to %s", x.id, req.path)
				}
			}
		}
		return nil
	})
}
