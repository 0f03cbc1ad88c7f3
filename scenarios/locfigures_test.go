package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// TestLocationsLatencyFigures measures, on `sibyl dev --locations 3 --nodes 9` (three nodes
// per location, 10 ms one-way WAN delay), what a location costs a client: the write latency
// of a group whose quorum stays in its home location (two of its three voting siblings
// there) against one whose quorum needs another location (no sibling at home), both written
// by a client at the main's own node; and the latency of a `sibling` read entering at a node
// without a copy, served by a copy in that node's location against one sent to the main
// because the location holds no copy. The figures are logged (docs/locations.md "Tests and
// figures"); what is asserted is only what must hold whatever the machine's load: the
// placement the figures rest on, and every write and read answered.
func TestLocationsLatencyFigures(t *testing.T) {
	c := StartCluster(t, Options{Locations: 3, Nodes: 9})
	where, at := nodesByLocation(t, c)
	groups := waitGroupsServed(t, c, map[uint16]string{1: "loc1", 2: "loc2"}, 3, 90*time.Second)
	for _, id := range []uint16{1, 2} {
		if int(*groups[id].Main) != int(id) {
			t.Fatalf("group %d: main %d, want its creator %d", id, *groups[id].Main, id)
		}
	}

	// Group 1 (home loc1): its other two loc1 nodes and one node outside. Group 2 (home
	// loc2): three siblings, none in loc2.
	var outside1 uint16
	for _, s := range groups[1].Siblings {
		if where[s.Node] != "loc1" {
			outside1 = s.Node
			break
		}
	}
	if outside1 == 0 {
		t.Fatalf("group 1 has no sibling outside loc1: %+v", groups[1].Siblings)
	}
	want1 := []uint16{uint16(at["loc1"][1]), uint16(at["loc1"][2]), outside1}
	var want2 []uint16
	for _, s := range groups[2].Siblings {
		if where[s.Node] != "loc2" {
			want2 = append(want2, s.Node)
		}
	}
	for _, id := range append(at["loc1"], at["loc3"]...) {
		if len(want2) < 3 && !slices.Contains(want2, uint16(id)) {
			want2 = append(want2, uint16(id))
		}
	}
	g1 := placeSiblings(t, c, 1, "loc1", want1)
	g2 := placeSiblings(t, c, 2, "loc2", want2)
	t.Logf("group 1 (home loc1, main 1): voting siblings %v; group 2 (home loc2, main 2): voting siblings %v", votingNodes(g1), votingNodes(g2))

	// Writes: one client at each main's node, one write to each group in turn.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w1, w2 := c.NodeClient(1), c.NodeClient(2)
	r1, r2 := createBlob(t, ctx, w1, 1), createBlob(t, ctx, w2, 2)
	const samples = 200
	var lat1, lat2 []time.Duration
	for i := 0; i < samples; i++ {
		lat1 = append(lat1, timedUpdate(t, ctx, w1, r1, i))
		lat2 = append(lat2, timedUpdate(t, ctx, w2, r2, i))
	}
	t.Logf("writes from a client at the main's node, %d each, 10 ms one-way WAN delay: group 1 (quorum in its home location) p50 %v p99 %v; group 2 (quorum in other locations) p50 %v p99 %v",
		samples, pct(lat1, 50), pct(lat1, 99), pct(lat2, 50), pct(lat2, 99))

	// Sibling reads of group 1's resource entering at a node without a copy: one in the
	// outside sibling's location (served by that copy), one in the location holding none
	// (sent to the main in loc1).
	var near, far int
	for _, loc := range []string{"loc2", "loc3"} {
		for _, id := range at[loc] {
			if slices.Contains(want1, uint16(id)) {
				continue
			}
			if loc == where[outside1] && near == 0 {
				near = id
			}
			if loc != where[outside1] && far == 0 {
				far = id
			}
		}
	}
	readNear, readFar, readOwn := c.NodeClient(near), c.NodeClient(far), c.NodeClient(int(outside1))
	var latNear, latFar, latOwn []time.Duration
	for i := 0; i < samples; i++ {
		latNear = append(latNear, timedRead(t, ctx, readNear, r1))
		latFar = append(latFar, timedRead(t, ctx, readFar, r1))
		latOwn = append(latOwn, timedRead(t, ctx, readOwn, r1))
	}
	t.Logf("sibling reads of group 1, %d each: at node %d (%s, holds a copy) p50 %v p99 %v; at node %d (%s, no copy; node %d there has one) p50 %v p99 %v; at node %d (%s, no copy in its location: the main in loc1) p50 %v p99 %v",
		samples, outside1, where[outside1], pct(latOwn, 50), pct(latOwn, 99),
		near, where[uint16(near)], outside1, pct(latNear, 50), pct(latNear, 99),
		far, where[uint16(far)], pct(latFar, 50), pct(latFar, 99))
}

// placeSiblings makes want the voting siblings of group g (home loc): it registers the
// missing ones, then removes the others, and returns the group as its home shows it.
func placeSiblings(t *testing.T, c *Cluster, g uint16, home string, want []uint16) command.StatusGroup {
	t.Helper()
	sg, _, err := groupAtHome(c, home, g)
	if err != nil {
		t.Fatal(err)
	}
	have := votingNodes(sg)
	for _, n := range want {
		if !slices.Contains(have, n) {
			if phases := registerOverWS(t, c, int(g), int64(g), int64(n)); len(phases) == 0 || phases[len(phases)-1] != "active" {
				t.Fatalf("registerSibling of node %d to group %d: phases %v", n, g, phases)
			}
		}
	}
	for _, n := range have {
		if !slices.Contains(want, n) {
			if err := adminCall(t, c, int(g), command.OpRemoveSibling, int64(g), int64(n)); err != nil {
				t.Fatalf("removeSibling of node %d from group %d: %v", n, g, err)
			}
		}
	}
	var out command.StatusGroup
	waitFor(t, 30*time.Second, fmt.Sprintf("group %d with voting siblings %v", g, want), func() bool {
		sg, _, err := groupAtHome(c, home, g)
		if err != nil {
			return false
		}
		got := votingNodes(sg)
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		out = sg
		return slices.Equal(got, w) && len(sg.Siblings) == len(want)
	})
	return out
}

// votingNodes lists the voting siblings of g.
func votingNodes(g command.StatusGroup) []uint16 {
	var out []uint16
	for _, s := range g.Siblings {
		if s.State == command.SiblingVoting {
			out = append(out, s.Node)
		}
	}
	return out
}

func createBlob(t *testing.T, ctx context.Context, cl *client.Client, g uint16) string {
	t.Helper()
	s := int64(g)
	rep, err := cl.DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: "blob", Server: &s, Data: json.RawMessage(`{"v":0}`),
		Key: fmt.Sprintf("figures-%d", g)})
	if err != nil {
		t.Fatalf("create in group %d: %v", g, err)
	}
	return rep.Resource.ID
}

func timedUpdate(t *testing.T, ctx context.Context, cl *client.Client, rid string, i int) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := cl.Update(ctx, rid, json.RawMessage(fmt.Sprintf(`{"v":%d}`, i+1))); err != nil {
		t.Fatalf("update %s: %v", rid, err)
	}
	return time.Since(start)
}

func timedRead(t *testing.T, ctx context.Context, cl *client.Client, rid string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := cl.Get(ctx, rid, command.SiblingRead); err != nil {
		t.Fatalf("sibling read of %s: %v", rid, err)
	}
	return time.Since(start)
}

// pct is the p-th percentile of ds, rounded to 100 µs.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}
