package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 6 (docs/replication.md): only a group's home raises its epoch. A copy refuses a
// seal sent by another location's controllers and keeps its epoch; its home's seal is
// taken.
func TestCase6_CopyRefusesASealFromAnotherLocation(t *testing.T) {
	_, nodes := testCluster(t)
	b := nodes[1]
	waitUntil(t, 5*time.Second, "node 2 follows group 1 in epoch 1", func() bool {
		if b.n.homeOf(1) != "default" || b.n.localGroup(1) == nil {
			return false
		}
		m, err := b.n.localGroup(1).gs.Meta()
		return err == nil && m.Epoch == 1
	})
	seal := func(home string, epoch uint64) int {
		body, _ := json.Marshal(command.SealRequest{Server: 1, Epoch: epoch, From: 1, Home: home})
		resp, err := http.Post("http://"+b.cfg.HTTPAddr+"/v1/internal/seal", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := seal("elsewhere", 5); code != http.StatusConflict {
		t.Fatalf("seal from another location: HTTP %d, want 409", code)
	}
	if m, err := b.n.localGroup(1).gs.Meta(); err != nil || m.Epoch != 1 {
		t.Fatalf("epoch after a refused seal: %d (%v), want 1", m.Epoch, err)
	}
	if code := seal("default", 2); code != http.StatusOK {
		t.Fatalf("seal from the group's home: HTTP %d, want 200", code)
	}
	if m, err := b.n.localGroup(1).gs.Meta(); err != nil || m.Epoch != 2 {
		t.Fatalf("epoch after the home's seal: %d (%v), want 2", m.Epoch, err)
	}
}

// The node's one view of every location's directory: each group from its home, each node
// once, from its own location's directory when two list it.
func TestMergedDirectoryTakesGroupsFromTheirHomes(t *testing.T) {
	n := &Node{cfg: Config{ID: 1, Location: "loc1"}}
	n.own = &link{loc: "loc1", own: true, dir: &command.Directory{Index: 7, Location: "loc1",
		Nodes:  []command.NodeInfo{{ID: 1, Location: "loc1", State: command.NodeUp}, {ID: 2, Location: "loc2", State: command.NodeDown}},
		Groups: []command.GroupInfo{{Server: 1, Main: 1, Home: "loc1"}}}}
	n.links = map[string]*link{"loc1": n.own, "loc2": {loc: "loc2", dir: &command.Directory{Index: 3, Location: "loc2",
		Nodes:  []command.NodeInfo{{ID: 1, Location: "loc1", State: command.NodeDown}, {ID: 2, Location: "loc2", State: command.NodeUp}},
		Groups: []command.GroupInfo{{Server: 2, Main: 1, Home: "loc2"}, {Server: 1, Main: 2}}}}}
	d := n.mergeLocked()
	if d.Index != 7 || len(d.Groups) != 2 || d.Group(1).Main != 1 || d.Group(1).Home != "loc1" || d.Group(2).Home != "loc2" {
		t.Fatalf("merged groups %+v (index %d): want group 1 from loc1, group 2 from loc2", d.Groups, d.Index)
	}
	if len(d.Nodes) != 2 || d.NodeByID(1).State != command.NodeUp || d.NodeByID(2).State != command.NodeUp {
		t.Fatalf("merged nodes %+v: want each from its own location's directory", d.Nodes)
	}
}
