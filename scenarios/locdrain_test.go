package scenarios

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestLocationsDrainAcrossLocations: `sibyl dev --locations 3 --nodes 6` with keyed writers on
// every group. An operator at a node of loc2 drains node 4, a node of loc1 holding copies of
// groups homed in several locations: loc2 passes the call to loc1, which has every location
// move its own groups' copies off node 4. Afterwards no location's status shows a copy on
// node 4, every location shows it spare, and every group still has three voting siblings;
// removeNode is refused while node 4 runs, and once it is stopped it is removed from every
// location. No acknowledged write is lost and the history is linearizable. It runs in the
// tls mode: the call crosses locations over TLS with the cluster secret and the operator's
// admin token.
func TestLocationsDrainAcrossLocations(t *testing.T) {
	o := withMode(Options{Locations: 3, Nodes: 6}, modeNamed("tls"))
	c := StartCluster(t, o)
	where, at := nodesByLocation(t, c)
	homes := map[uint16]string{}
	for id, loc := range where {
		homes[id] = loc
	}
	waitGroupsServed(t, c, homes, 3, 90*time.Second)
	// Node 4 (loc1) holds copies of groups of at least two homes: loc1's own group 4, and
	// group 2 (loc2) unless placement gave it one of another home already.
	const drained = 4
	held := copiesEverywhere(t, c, drained)
	if !slices.ContainsFunc(held, func(g uint16) bool { return homes[g] != where[drained] }) {
		if phases := registerOverWS(t, c, at["loc3"][0], 2, drained); len(phases) == 0 || phases[len(phases)-1] != "active" {
			t.Fatalf("registerSibling of node %d to group 2: phases %v", drained, phases)
		}
		held = copiesEverywhere(t, c, drained)
	}
	t.Logf("node %d (%s) holds copies of groups %v", drained, where[drained], held)

	h := NewHistory()
	var all []*writer
	var stops []func()
	for id := uint16(1); id <= 6; id++ {
		var entries []int
		for _, loc := range []string{"loc1", "loc2", "loc3"} {
			for _, n := range at[loc] {
				if n != drained {
					entries = append(entries, n)
					break
				}
			}
		}
		ws, stop := startWritersFrom(t, c, h, command.ServerID(id), 2, entries, int(id)*10)
		all, stops = append(all, ws...), append(stops, stop)
	}
	stop := stopOnce(stops...)
	defer stop()
	waitFor(t, 60*time.Second, "300 writes", func() bool { return acked(all) >= 300 })

	via := at["loc2"][0]
	drainAt := h.Now()
	start := time.Now()
	if err := adminRetry(t, c, via, command.OpDrain, drained); err != nil {
		t.Fatalf("drain node %d asked at node %d (loc2): %v", drained, via, err)
	}
	took := time.Since(start)
	if left := copiesEverywhere(t, c, drained); len(left) > 0 {
		t.Fatalf("after the drain node %d still holds copies of groups %v", drained, left)
	}
	// Its own location shows it spare (the others' guest records of it are not in their
	// statuses, which list a node of another location from its own location's ads).
	if n := nodeInStatus(t, c, "loc1", drained); n == nil || n.State != command.NodeSpare {
		t.Errorf("loc1 shows node %d as %+v after the drain, want spare", drained, n)
	}
	before := acked(all)
	waitFor(t, 30*time.Second, "300 writes after the drain", func() bool { return acked(all) >= before+300 })
	t.Logf("drain of node %d asked at node %d (loc2): every location moved its copies in %v; longest gap between acknowledged writes from the drain on %v",
		drained, via, took.Round(time.Millisecond), longestGap(all, drainAt, h.Now()).Round(time.Millisecond))
	waitGroupsServed(t, c, homes, 3, 30*time.Second)

	if err := adminRetry(t, c, via, command.OpRemoveNode, drained); command.CodeOf(err) != command.CodeConflict {
		t.Fatalf("removeNode of running node %d: %v, want conflict", drained, err)
	}
	c.Kill(c.Node(drained))
	var err error
	waitFor(t, 20*time.Second, fmt.Sprintf("removeNode of stopped node %d", drained), func() bool {
		err = adminRetry(t, c, via, command.OpRemoveNode, drained)
		return err == nil
	})
	if n := nodeInStatus(t, c, "loc1", drained); n != nil {
		t.Errorf("loc1 still lists node %d after removeNode: %+v", drained, n)
	}
	stop()
	checkRun(t, c, h, all, at["loc3"][0])
}

// copiesEverywhere lists the groups, of every home, node holds a copy of (main or
// sibling), as their homes' statuses show them; it fails the test when a home does not
// answer.
func copiesEverywhere(t *testing.T, c *Cluster, node uint16) []uint16 {
	t.Helper()
	var out []uint16
	for _, home := range []string{"loc1", "loc2", "loc3"} {
		var st *command.Status
		for _, p := range c.Controllers {
			if p.Location == home {
				if s, err := c.StatusFrom(p); err == nil {
					st = s
					break
				}
			}
		}
		if st == nil {
			t.Fatalf("no controller of %s answers /v1/status", home)
		}
		for _, g := range st.Groups {
			if g.Home != home {
				continue
			}
			holds := g.Main != nil && *g.Main == node
			for _, s := range g.Siblings {
				holds = holds || s.Node == node
			}
			if holds {
				out = append(out, g.Server)
			}
		}
	}
	return out
}

// nodeInStatus returns node id as a controller of its location loc lists it (nil: absent).
func nodeInStatus(t *testing.T, c *Cluster, loc string, id uint16) *command.StatusNode {
	t.Helper()
	for _, p := range c.Controllers {
		if p.Location != loc {
			continue
		}
		st, err := c.StatusFrom(p)
		if err != nil {
			continue
		}
		for _, n := range st.Nodes {
			if n.ID == id {
				return &n
			}
		}
		return nil
	}
	t.Fatalf("no controller of %s answers /v1/status", loc)
	return nil
}

// adminRetry sends admin call op about node through node via, again while it is refused as
// unavailable (a controller leader changing, as on a loaded machine), as an operator would;
// it returns the last answer.
func adminRetry(t *testing.T, c *Cluster, via int, op string, node uint16) error {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := adminCall(t, c, via, op, 0, int64(node))
		if command.CodeOf(err) != command.CodeUnavailable || time.Now().After(deadline) {
			return err
		}
		t.Logf("%s of node %d: %v; retrying", op, node, err)
		time.Sleep(200 * time.Millisecond) // pace retries after a refusal; not synchronisation
	}
}
