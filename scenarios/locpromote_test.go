package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestLocationsPlannedPromote: `sibyl dev --locations 3 --nodes 6` (10 ms WAN delay, tls
// mode) with keyed writers on group 1, homed in loc1, entering at a node of every location.
// An operator at a node of loc2 promotes group 1's sibling in another location: the call
// reaches loc1's controllers (the group's home), which hand the group over to it. Then a
// second promote hands it back to a node of loc1. After each, loc1's status shows the new
// main and writes go on; no write fails, none acknowledged is lost, and the history is
// linearizable.
func TestLocationsPlannedPromote(t *testing.T) {
	o := withMode(Options{Locations: 3, Nodes: 6}, modeNamed("tls"))
	c := StartCluster(t, o)
	where, at := nodesByLocation(t, c)
	g := waitGroupsServed(t, c, map[uint16]string{1: "loc1"}, 3, 90*time.Second)[1]
	// votingIn returns a voting sibling of group 1 in a location that in(loc) accepts.
	votingIn := func(g command.StatusGroup, in func(loc string) bool) uint16 {
		for _, s := range g.Siblings {
			if s.State == command.SiblingVoting && in(where[s.Node]) {
				return s.Node
			}
		}
		return 0
	}
	away := votingIn(g, func(loc string) bool { return loc != "loc1" })
	if away == 0 {
		t.Fatalf("group 1 has no voting sibling outside loc1: %+v", g.Siblings)
	}
	first := int(*g.Main)

	h := NewHistory()
	entries := []int{at["loc1"][0], at["loc2"][0], at["loc3"][0]}
	ws, stopWriters := startWritersFrom(t, c, h, 1, 6, entries, 0)
	stop := stopOnce(stopWriters)
	defer stop()
	waitFor(t, 60*time.Second, "200 writes", func() bool { return acked(ws) >= 200 })

	via := at["loc2"][0]
	promote := func(target uint16) (took, gap time.Duration) {
		t.Helper()
		at := h.Now()
		srv, node := int64(1), int64(target)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := c.Admin(via).Do(ctx, &command.Request{Op: command.OpPromote, Server: &srv, Node: &node}); err != nil {
			t.Fatalf("promote group 1 to node %d (%s), asked at node %d (loc2): %v", target, where[target], via, err)
		}
		took = time.Duration(h.Now() - at)
		before := acked(ws)
		waitFor(t, 30*time.Second, fmt.Sprintf("200 writes after the hand-over to node %d", target), func() bool { return acked(ws) >= before+200 })
		cur, _, err := groupAtHome(c, "loc1", 1)
		if err != nil || cur.Main == nil || *cur.Main != target {
			t.Fatalf("loc1 shows group 1's main as %v after promoting node %d (err %v)", cur.Main, target, err)
		}
		return took, longestGap(ws, at, h.Now())
	}
	took, gap := promote(away)
	t.Logf("group 1 handed from node %d (loc1) to node %d (%s) in %v; longest gap between acknowledged writes %v",
		first, away, where[away], took.Round(time.Millisecond), gap.Round(time.Millisecond))
	var home uint16
	waitFor(t, 30*time.Second, "a voting sibling of group 1 in loc1", func() bool {
		g, _, err := groupAtHome(c, "loc1", 1)
		home = votingIn(g, func(loc string) bool { return loc == "loc1" })
		return err == nil && home != 0
	})
	took, gap = promote(home)
	t.Logf("and back to node %d (loc1) in %v; longest gap %v", home, took.Round(time.Millisecond), gap.Round(time.Millisecond))
	stop()
	var failed int64
	for _, w := range ws {
		failed += w.failed.Load()
	}
	if failed > 0 {
		t.Errorf("%d writes failed during planned promotions", failed)
	}
	lost := checkRun(t, c, h, ws, at["loc3"][0])
	t.Logf("ops %d, failed %d, lost %d, linearizable: yes", h.Len(), failed, lost)
}
