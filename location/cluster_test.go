package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// converged reports whether every group of d has 3 voting siblings and no pending config.
func converged(d command.Directory, groups int) bool {
	if len(d.Groups) != groups {
		return false
	}
	for _, g := range d.Groups {
		if g.Pending != nil || len(g.Active.Voters) != 3 || len(g.Siblings) != 3 {
			return false
		}
		for _, m := range g.Siblings {
			if m.State != command.SiblingVoting {
				return false
			}
		}
	}
	return true
}

func TestClusterReplicatesFailsOverAndRestarts(t *testing.T) {
	tc := newTestCluster(t, 3)
	t.Logf("first leader %s", tc.leader(10*time.Second).id)

	// Every controller registers its HTTP address in the directory.
	eventuallyOK(t, 10*time.Second, "all controllers registered", func() error {
		for _, x := range tc.running() {
			for _, id := range tc.ids {
				if _, ok := x.c.fsm.controller(id); !ok {
					return fmt.Errorf("%s does not know %s", x.id, id)
				}
			}
		}
		return nil
	})

	// Four nodes join (through whichever controller, following hints) and heartbeat.
	var nodes []*fakeNode
	for i := uint16(1); i <= 4; i++ {
		n := &fakeNode{id: i, instance: fmt.Sprintf("inst-%d", i), ctls: tc.httpAddrs()}
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	stop := make(chan struct{})
	var beating sync.WaitGroup
	stopped := false
	stopBeats := func() {
		if !stopped {
			stopped = true
			close(stop)
			beating.Wait()
		}
	}
	t.Cleanup(stopBeats)
	for _, n := range nodes {
		beating.Add(1)
		go n.run(stop, &beating)
	}

	var d command.Directory
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		var err error
		if d, err = tc.directory(); err != nil {
			return err
		}
		if !converged(d, 4) {
			return fmt.Errorf("not converged: %+v", d.Groups)
		}
		return nil
	})
	for _, g := range d.Groups {
		if g.Active.Version != 4 || g.Epoch != 1 || g.Main != g.Server {
			t.Fatalf("group %d: %+v, want active version 4 (three proposals), epoch 1, its own main", g.Server, g)
		}
		for _, m := range g.Siblings {
			if m.CopyID != copyName(g.Server, m.Node) {
				t.Fatalf("group %d sibling %d copy ID %q", g.Server, m.Node, m.CopyID)
			}
		}
	}
	eventuallyOK(t, 10*time.Second, "followers hint the leader, status and endpoints", func() error {
		lead := tc.currentLeader()
		if lead == nil {
			return fmt.Errorf("no leader")
		}
		for _, x := range tc.running() {
			if x == lead {
				continue
			}
			if err := checkHints(x, lead); err != nil {
				return err
			}
			if err := checkStatus(x.httpAddr, lead.id); err != nil {
				return err
			}
		}
		return checkEndpoints(lead)
	})
	eventuallyOK(t, 20*time.Second, "long poll", func() error { return checkLongPoll(tc, nodes[0]) })

	// Snapshot the leader, so that its restart below restores from a snapshot, then stop it.
	old := tc.leader(10 * time.Second)
	if err := old.c.raft.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot on %s: %v", old.id, err)
	}
	before := old.c.Directory()
	tc.stop(old.id)

	lead := tc.leader(10 * time.Second)
	t.Logf("second leader %s", lead.id)
	if after := lead.c.Directory(); !reflect.DeepEqual(after.Groups, before.Groups) {
		t.Fatalf("new leader's groups differ:\n got %+v\nwant %+v", after.Groups, before.Groups)
	}
	// Nodes find the new leader and stay up.
	eventuallyOK(t, 10*time.Second, "nodes heartbeating the new leader", func() error {
		lead := tc.currentLeader()
		if lead == nil {
			return fmt.Errorf("no leader")
		}
		for _, n := range lead.c.Directory().Nodes {
			if n.State != command.NodeUp || n.Generation == 0 {
				return fmt.Errorf("node %d is %s at generation %d", n.ID, n.State, n.Generation)
			}
		}
		return nil
	})

	// Nodes that stop heartbeating are marked down after DownAfter.
	stopBeats()
	eventuallyOK(t, 10*time.Second, "nodes marked down", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if s := d.NodeByID(1).State; s != command.NodeDown {
			return fmt.Errorf("node 1 is %s", s)
		}
		return nil
	})

	// The old leader restarts on its data: no new bootstrap, it follows the leader and
	// catches up with the directory.
	tc.restart(old.id)
	if old.c.raft.bootstrapped {
		t.Fatal("restart with existing raft state bootstrapped again")
	}
	eventuallyOK(t, 15*time.Second, "restarted controller caught up and hints the leader", func() error {
		lead := tc.currentLeader()
		if lead == nil {
			return fmt.Errorf("no leader")
		}
		if lead == old {
			return nil // it may lead again; its directory is checked below either way
		}
		if old.c.Leader() != lead.id || old.c.fsm.index() < lead.c.fsm.index() {
			return fmt.Errorf("%s knows leader %q at index %d; leader %s at %d", old.id, old.c.Leader(), old.c.fsm.index(), lead.id, lead.c.fsm.index())
		}
		return checkHints(old, lead)
	})
	st, _ := old.c.fsm.view()
	if got := old.c.stamped(command.Directory{Groups: st.sortedGroups()}).Groups; !reflect.DeepEqual(got, before.Groups) {
		t.Fatalf("restarted controller's groups differ:\n got %+v\nwant %+v", got, before.Groups)
	}
	members, err := old.c.cons.members()
	if err != nil || len(members) != 3 {
		t.Fatalf("raft members after restart: %v %v", members, err)
	}
}

// checkHints asserts follower x answers the node protocol with 421 naming lead.
func checkHints(x, lead *testCtl) error {
	for _, req := range []struct{ method, path string }{{http.MethodPost, pathHeartbeat}, {http.MethodGet, pathDirectory}} {
		var in any
		if req.method == http.MethodPost {
			in = command.Heartbeat{Node: 1, Instance: "inst-1", Incarnation: 1}
		}
		code, body, err := call(req.method, x.httpAddr, req.path, in, nil)
		var hint command.LeaderHint
		_ = json.Unmarshal(body, &hint)
		if err != nil || code != http.StatusMisdirectedRequest || hint.Leader != lead.httpAddr {
			return fmt.Errorf("%s %s on follower %s: code %d hint %q err %v, want 421 naming %s", req.method, req.path, x.id, code, hint.Leader, err, lead.httpAddr)
		}
	}
	return nil
}

// checkStatus asserts /v1/status on addr (a follower proxies it) shows the converged cluster.
func checkStatus(addr, leader string) error {
	var s command.Status
	if code, body, err := call(http.MethodGet, addr, pathStatus, nil, &s); err != nil || code != 200 {
		return fmt.Errorf("status from %s: %d %s %v", addr, code, body, err)
	}
	if len(s.Locations) != 1 || s.Locations[0].Name != "default" || len(s.Locations[0].Controllers) != 3 {
		return fmt.Errorf("status locations %+v", s.Locations)
	}
	leaders := 0
	for _, c := range s.Controllers {
		if c.Leader {
			leaders++
			if c.ID != leader {
				return fmt.Errorf("status names %s leader, want %s", c.ID, leader)
			}
		}
		if c.Addr == "" {
			return fmt.Errorf("status controller %s without address", c.ID)
		}
	}
	if leaders != 1 || len(s.Nodes) != 4 || len(s.Groups) != 4 {
		return fmt.Errorf("status: %d leaders, %d nodes, %d groups", leaders, len(s.Nodes), len(s.Groups))
	}
	for _, n := range s.Nodes {
		if n.State != command.NodeUp {
			return fmt.Errorf("status node %+v not up", n)
		}
	}
	for _, g := range s.Groups {
		if g.Main == nil || *g.Main != g.Server || g.Seq != fakeLastSeq || g.Warning != "" || len(g.Siblings) != 3 {
			return fmt.Errorf("status group %+v", g)
		}
		for _, sib := range g.Siblings {
			if sib.State != command.SiblingVoting || sib.LagSeq != 5 {
				return fmt.Errorf("status group %d sibling %+v, want voting with lag 5", g.Server, sib)
			}
		}
	}
	return nil
}

// checkEndpoints covers /healthz, /metrics and / on the leader.
func checkEndpoints(lead *testCtl) error {
	if code, body, err := call(http.MethodGet, lead.httpAddr, "/healthz", nil, nil); err != nil || code != 200 {
		return fmt.Errorf("healthz: %d %s %v", code, body, err)
	}
	code, body, err := call(http.MethodGet, lead.httpAddr, "/metrics", nil, nil)
	if err != nil || code != 200 {
		return fmt.Errorf("metrics: %d %v", code, err)
	}
	for _, want := range []string{
		"sibyl_controller_groups 4\n", `sibyl_controller_nodes{state="up"} 4`, "sibyl_controller_leader 1\n",
		`sibyl_controller_raft_state{state="leader"} 1`, `sibyl_controller_siblings{state="voting"} 12`,
		`sibyl_controller_commands_applied_total{kind="joinNode",outcome="ok"} `, "go_goroutines ",
	} {
		if !strings.Contains(string(body), want) {
			return fmt.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if code, body, err := call(http.MethodGet, lead.httpAddr, "/", nil, nil); err != nil || code != 200 || !strings.Contains(string(body), "<html") {
		return fmt.Errorf("status page: %d %v", code, err)
	}
	return nil
}

// checkLongPoll asserts the directory long poll waits while nothing changes and wakes when
// a command is applied (here a repeated join, which changes nothing but the index).
func checkLongPoll(tc *testCluster, n *fakeNode) error {
	lead := tc.currentLeader()
	if lead == nil {
		return fmt.Errorf("no leader")
	}
	idx := lead.c.fsm.index()
	start := time.Now()
	var d command.Directory
	if code, body, err := call(http.MethodGet, lead.httpAddr, fmt.Sprintf("%s?after=%d", pathDirectory, idx), nil, &d); err != nil || code != 200 {
		return fmt.Errorf("long poll: %d %s %v", code, body, err)
	}
	if waited := time.Since(start); d.Index != idx || waited < 900*time.Millisecond {
		return fmt.Errorf("idle long poll answered index %d after %v, want %d after the 1 s poll", d.Index, waited, idx)
	}
	got := make(chan command.Directory, 1)
	go func() {
		var d command.Directory
		_, _, _ = call(http.MethodGet, lead.httpAddr, fmt.Sprintf("%s?after=%d", pathDirectory, idx), nil, &d)
		got <- d
	}()
	for lead.c.polls.Load() == 0 { // wait until the poll is parked, so the join must wake it
		select {
		case d := <-got:
			return fmt.Errorf("long poll answered index %d before any change", d.Index)
		case <-time.After(time.Millisecond):
		}
	}
	if err := n.join(); err != nil {
		return fmt.Errorf("rejoin: %v", err)
	}
	select {
	case d := <-got:
		if d.Index <= idx {
			return fmt.Errorf("woken long poll answered index %d, want > %d", d.Index, idx)
		}
	case <-time.After(3 * time.Second):
		return fmt.Errorf("long poll not woken by a change")
	}
	return nil
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:0", DataDir: dir},
		{ID: "c1", HTTPAddr: "127.0.0.1:1", DataDir: dir},
		{ID: "c1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:0", DataDir: dir, Peers: map[string]string{"c2": "127.0.0.1:2"}},
	} {
		if c, err := New(cfg); err == nil {
			_ = c.Close()
			t.Fatalf("New(%+v) succeeded", cfg)
		}
	}
}
