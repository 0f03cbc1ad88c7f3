package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
)

func groupStatus(t *testing.T, c *Cluster, server uint16) command.StatusGroup {
	t.Helper()
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Groups {
		if g.Server == server {
			return g
		}
	}
	t.Fatalf("no group %d in status", server)
	return command.StatusGroup{}
}

func adminCall(t *testing.T, c *Cluster, via int, op string, server, node int64) error {
	t.Helper()
	req := &command.Request{Op: op, Node: &node}
	if server != 0 {
		req.Server = &server
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := c.Admin(via).Do(ctx, req)
	return err
}

// TestRegisterAndRemoveSibling: an operator adds a fifth copy to a group and removes it
// again; the refusals of docs/protocol.md §3 hold. It runs in every clusterMode.
func TestRegisterAndRemoveSibling(t *testing.T) {
	for _, mode := range clusterModes {
		t.Run(mode.name, func(t *testing.T) { testRegisterAndRemoveSibling(t, mode.opts) })
	}
}

func testRegisterAndRemoveSibling(t *testing.T, mode Options) {
	c := StartCluster(t, withMode(Options{Nodes: 5}, mode))
	sg := c.WaitVoting(1, 3)
	extra := int64(nodeWithoutCopy(t, sg, 5))
	phases := registerOverWS(t, c, 1, 1, extra)
	if len(phases) < 3 || phases[0] != "sync" || phases[len(phases)-1] != "active" || !slices.Contains(phases, "replay") {
		t.Fatalf("registerSibling progress phases %v: want sync, replay..., active last", phases)
	}
	t.Logf("registerSibling of node %d: progress phases %v", extra, phases)
	voting := 0
	for _, s := range groupStatus(t, c, 1).Siblings {
		if s.State == command.SiblingVoting {
			voting++
		}
	}
	if voting != 4 {
		t.Fatalf("after registerSibling: %d voting siblings, want 4", voting)
	}
	for _, tc := range []struct {
		op           string
		server, node int64
		want         command.Code
	}{
		{command.OpRegisterSibling, 1, extra, command.CodeConflict},
		{command.OpRegisterSibling, 1, 99, command.CodeNotFound},
		{command.OpRegisterSibling, 77, extra, command.CodeNotFound},
		{command.OpPromote, 1, 99, command.CodeNotFound},
	} {
		if err := adminCall(t, c, 2, tc.op, tc.server, tc.node); command.CodeOf(err) != tc.want {
			t.Errorf("%s server %d node %d: %v, want %s", tc.op, tc.server, tc.node, err, tc.want)
		}
	}
	if err := adminCall(t, c, 3, command.OpRemoveSibling, 1, extra); err != nil {
		t.Fatalf("removeSibling node %d: %v", extra, err)
	}
	for _, s := range groupStatus(t, c, 1).Siblings {
		if int64(s.Node) == extra {
			t.Fatalf("node %d still a sibling of group 1 after removeSibling", extra)
		}
	}
}

// TestDrainUnderLoad: drain a node that is main of one group and sibling of others while
// clients write to every group: nothing is lost, the history is linearizable, and the node
// ends spare with no copy. It runs in every clusterMode.
func TestDrainUnderLoad(t *testing.T) {
	for _, mode := range clusterModes {
		t.Run(mode.name, func(t *testing.T) { testDrainUnderLoad(t, mode.opts) })
	}
}

func testDrainUnderLoad(t *testing.T, mode Options) {
	c := StartCluster(t, withMode(Options{Nodes: 5}, mode))
	for g := uint16(1); g <= 5; g++ {
		c.WaitVoting(g, 3)
	}
	h := NewHistory()
	var all []*writer
	var stops []func()
	for g := command.ServerID(1); g <= 5; g++ {
		ws, stop := startWritersFrom(t, c, h, g, 2, []int{1, 3, 4, 5}, int(g)*10)
		all = append(all, ws...)
		stops = append(stops, stop)
	}
	waitFor(t, 20*time.Second, "writes on every group", func() bool { return acked(all) >= 300 })
	// Both calls are retried while the controllers answer unavailable (a leader changing on
	// a loaded machine), as an operator would.
	if err := adminRetry(t, c, 1, command.OpRemoveNode, 2); command.CodeOf(err) != command.CodeConflict {
		t.Fatalf("removeNode of node 2 holding copies: %v, want conflict", err)
	}
	start := time.Now()
	if err := adminRetry(t, c, 1, command.OpDrain, 2); err != nil {
		t.Fatalf("drain node 2: %v", err)
	}
	took := time.Since(start)
	before := acked(all)
	waitFor(t, 20*time.Second, "writes after the drain", func() bool { return acked(all) >= before+300 })
	for _, stop := range stops {
		stop()
	}
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.ID == 2 && n.State != command.NodeSpare {
			t.Errorf("node 2 is %s after drain, want spare", n.State)
		}
	}
	for _, g := range st.Groups {
		if g.Main != nil && *g.Main == 2 {
			t.Errorf("node 2 is still main of group %d", g.Server)
		}
		for _, s := range g.Siblings {
			if s.Node == 2 {
				t.Errorf("node 2 still holds a copy of group %d", g.Server)
			}
		}
	}
	var failed int64
	for _, w := range all {
		failed += w.failed.Load()
	}
	lost := checkRun(t, c, h, all, 1)
	t.Logf("%s: drain of node 2 took %v; ops %d, failed %d, lost %d, linearizable: yes", describeMode(mode), took.Round(time.Millisecond), h.Len(), failed, lost)

	// Decommission: refused while the drained node still runs, done once it is stopped.
	if err := adminCall(t, c, 1, command.OpRemoveNode, 0, 2); command.CodeOf(err) != command.CodeConflict {
		t.Fatalf("removeNode of a running spare node: %v, want conflict", err)
	}
	c.Kill(c.Node(2))
	waitFor(t, 20*time.Second, "removeNode of the stopped spare node 2", func() bool {
		err := adminCall(t, c, 1, command.OpRemoveNode, 0, 2)
		if err != nil && command.CodeOf(err) != command.CodeConflict {
			t.Fatalf("removeNode of the stopped spare node 2: %v", err)
		}
		return err == nil
	})
	st, err = c.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.ID == 2 {
			t.Fatalf("node 2 is still in the directory after removeNode: %+v", n)
		}
	}
	if err := adminCall(t, c, 1, command.OpRemoveNode, 0, 2); command.CodeOf(err) != command.CodeNotFound {
		t.Fatalf("removeNode of a removed node: %v, want not_found", err)
	}
}

// registerOverWS sends registerSibling on a raw WebSocket to node via (with the cluster's
// TLS and admin token) and returns the phases of the progress events that came before the
// ok reply (docs/protocol.md §3). A retryable refusal (a controller leader change, say) is
// retried, as an operator would.
func registerOverWS(t *testing.T, c *Cluster, via int, server, node int64) []string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		phases, err := registerOnce(t, c, via, server, node)
		if err == nil {
			return phases
		}
		if !err.Retryable || attempt == 5 {
			t.Fatalf("registerSibling failed: %v", err)
		}
		t.Logf("registerSibling attempt %d: %v; retrying", attempt, err)
	}
}

func registerOnce(t *testing.T, c *Cluster, via int, server, node int64) ([]string, *command.Error) {
	t.Helper()
	header := http.Header{}
	if c.adminToken != "" {
		header.Set("Authorization", "Bearer "+c.adminToken)
	}
	ws, _, err := c.WSDialer().Dial(c.WSURL(c.Node(via), "/v1/ws"), header)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	req := fmt.Sprintf(`{"id":"reg","op":"registerSibling","server":%d,"node":%d}`, server, node)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
		t.Fatal(err)
	}
	var phases []string
	for {
		ws.SetReadDeadline(time.Now().Add(60 * time.Second))
		var f struct {
			ID    *string        `json:"id"`
			OK    bool           `json:"ok"`
			Error *command.Error `json:"error"`
			Sub   string         `json:"sub"`
			Event string         `json:"event"`
			Phase string         `json:"phase"`
		}
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("reading registerSibling frames: %v", err)
		}
		switch {
		case f.Event == "progress" && f.Sub == "reg":
			phases = append(phases, f.Phase)
		case f.ID != nil && *f.ID == "reg":
			if !f.OK {
				if f.Error == nil {
					f.Error = command.Errorf(command.CodeInternal, "refused without an error")
				}
				return phases, f.Error
			}
			return phases, nil
		}
	}
}
