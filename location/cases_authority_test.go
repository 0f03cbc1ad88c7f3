package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

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
