package scenarios

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// groupAtHome returns group server as the status of its home location's controllers
// shows it (a location's status lists the groups homed there).
func groupAtHome(c *Cluster, home string, server uint16) (command.StatusGroup, *command.Status, error) {
	for _, p := range c.Controllers {
		if p.Location != home {
			continue
		}
		st, err := c.StatusFrom(p)
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			if g.Server == server && g.Main != nil {
				return g, st, nil
			}
		}
	}
	return command.StatusGroup{}, nil, fmt.Errorf("group %d not served at its home %s yet", server, home)
}

// latencyP50 is the median latency of the writers' acknowledged writes sent within
// [from, to] of the history clock.
func latencyP50(ws []*writer, from, to int64) time.Duration {
	var ls []int64
	for _, w := range ws {
		w.mu.Lock()
		for i, call := range w.ackCalls {
			if call >= from && call <= to {
				ls = append(ls, w.ackTimes[i]-call)
			}
		}
		w.mu.Unlock()
	}
	if len(ls) == 0 {
		return 0
	}
	slices.Sort(ls)
	return time.Duration(ls[len(ls)/2])
}

// TestLocationsGroupsSpanLocations: `sibyl dev --locations 3 --nodes 6` with its 10 ms
// WAN delay. Every group keeps a copy outside its main's location; a client at a node of
// any location writes to a group homed in another; an operator registers a sibling in a
// third location through a node of yet another; a main is killed with kill -9 and its
// home promotes a copy, preferring one in the home location. Keyed writers run on two
// groups homed in different locations all along: no acknowledged write is lost and the
// history is linearizable. It logs the write p50 with a quorum across locations and the
// longest gap between acknowledged writes around the kill. It runs in an open cluster and
// in the tls mode (TLS, the cluster secret and an admin token on every connection, the WAN
// links included), where the writers present a client role's token made at loc1 to nodes
// of every location (docs/security.md: a token is valid at every location).
func TestLocationsGroupsSpanLocations(t *testing.T) {
	for _, mode := range clusterModes {
		if mode.name == "secured" {
			continue // the tls mode has every setting of the secured one
		}
		t.Run(mode.name, func(t *testing.T) {
			o := withMode(Options{Locations: 3, Nodes: 6}, mode.opts)
			testGroupsSpanLocations(t, o)
		})
	}
}

func testGroupsSpanLocations(t *testing.T, o Options) {
	c := StartCluster(t, o)
	where := map[uint16]string{}
	for _, p := range c.Nodes {
		where[uint16(mustAtoi(t, p.Name()))] = p.Location
	}
	var g1, g2 command.StatusGroup
	waitFor(t, 60*time.Second, "groups 1 (loc1) and 2 (loc2) at 3 voting siblings each", func() bool {
		for _, x := range []struct {
			g    *command.StatusGroup
			home string
			id   uint16
		}{{&g1, "loc1", 1}, {&g2, "loc2", 2}} {
			g, _, err := groupAtHome(c, x.home, x.id)
			if err != nil {
				return false
			}
			voting := 0
			for _, s := range g.Siblings {
				if s.State == command.SiblingVoting {
					voting++
				}
			}
			if voting < 3 {
				return false
			}
			*x.g = g
		}
		return true
	})
	for _, g := range []command.StatusGroup{g1, g2} {
		if g.Home != where[*g.Main] {
			t.Fatalf("group %d: home %q, main %d in %q; want its creator's location", g.Server, g.Home, *g.Main, where[*g.Main])
		}
		outside := 0
		for _, s := range g.Siblings {
			if where[s.Node] != where[*g.Main] {
				outside++
			}
		}
		if outside == 0 {
			t.Fatalf("group %d: no sibling outside its main's location %s: %+v", g.Server, where[*g.Main], g.Siblings)
		}
	}
	t.Logf("group 1 (home loc1): main %d, siblings %+v; group 2 (home loc2): main %d, siblings %+v", *g1.Main, g1.Siblings, *g2.Main, g2.Siblings)

	// Writers on group 1 enter at nodes of loc2 and loc3, writers on group 2 at loc1 and loc3.
	h := NewHistory()
	ws1, stop1 := startWritersFrom(t, c, h, 1, 8, []int{2, 3, 5, 6}, 0)
	ws2, stop2 := startWritersFrom(t, c, h, 2, 8, []int{1, 3, 4, 6}, 100)
	stop := stopOnce(stop1, stop2)
	defer stop()
	steadyFrom := h.Now()
	waitFor(t, 30*time.Second, "200 writes to each group", func() bool { return acked(ws1) >= 200 && acked(ws2) >= 200 })
	t.Logf("steady: write p50 %v to group 1 (entered in loc2/loc3, main in loc1, quorum across locations), %v to group 2",
		latencyP50(ws1, steadyFrom, h.Now()).Round(100*time.Microsecond), latencyP50(ws2, steadyFrom, h.Now()).Round(100*time.Microsecond))

	// registerSibling of a node of another location than group 2's home, asked at a node of
	// a third location: the snapshot and replay cross the WAN.
	holders := map[uint16]bool{*g2.Main: true}
	for _, s := range g2.Siblings {
		holders[s.Node] = true
	}
	var extra uint16
	for id := uint16(1); id <= 6; id++ {
		if !holders[id] && where[id] != "loc2" && id != *g1.Main {
			extra = id
			break
		}
	}
	if extra != 0 {
		var via int
		for id := 1; id <= 6; id++ {
			if where[uint16(id)] != "loc2" && where[uint16(id)] != where[extra] {
				via = id
				break
			}
		}
		start := time.Now()
		phases := registerOverWS(t, c, via, 2, int64(extra))
		if len(phases) == 0 || phases[len(phases)-1] != "active" {
			t.Fatalf("registerSibling of node %d (%s) to group 2 (loc2) via node %d: phases %v", extra, where[extra], via, phases)
		}
		g, _, err := groupAtHome(c, "loc2", 2)
		if err != nil {
			t.Fatal(err)
		}
		voting := false
		for _, s := range g.Siblings {
			voting = voting || (s.Node == extra && s.State == command.SiblingVoting)
		}
		if !voting {
			t.Fatalf("after registerSibling node %d is not a voting sibling of group 2: %+v", extra, g.Siblings)
		}
		t.Logf("registerSibling of node %d (%s) to group 2 (home loc2), asked at node %d (%s): phases %v, took %v",
			extra, where[extra], via, where[uint16(via)], phases, time.Since(start).Round(time.Millisecond))
	} else {
		t.Logf("every node outside loc2 already holds group 2; no registration to try")
	}

	// kill -9 group 1's main: its home (loc1) promotes, preferring a voting copy in loc1.
	main1 := int(*g1.Main)
	g1, _, _ = groupAtHome(c, "loc1", 1)
	homeCopy := false
	for _, s := range g1.Siblings {
		homeCopy = homeCopy || (s.State == command.SiblingVoting && where[s.Node] == "loc1")
	}
	before := acked(ws1)
	killAt := h.Now()
	c.Kill(c.Node(main1))
	var promoted command.StatusGroup
	waitFor(t, 20*time.Second, "a new main for group 1 at its home", func() bool {
		g, _, err := groupAtHome(c, "loc1", 1)
		if err != nil || int(*g.Main) == main1 {
			return false
		}
		promoted = g
		return true
	})
	waitFor(t, 30*time.Second, "200 writes to group 1 after the kill", func() bool { return acked(ws1) >= before+200 })
	gap := longestGap(ws1, killAt-int64(time.Second), h.Now())
	newMain := *promoted.Main
	if homeCopy && where[newMain] != "loc1" {
		t.Errorf("group 1 promoted node %d in %s although a voting copy in its home loc1 existed", newMain, where[newMain])
	}
	if gap > 2*time.Second {
		t.Errorf("longest gap between acknowledged writes to group 1 around the kill: %v, want at most 2 s", gap)
	}
	t.Logf("main %d of group 1 killed; node %d (%s) main in epoch %d; longest gap between acknowledged writes %v",
		main1, newMain, where[newMain], promoted.Epoch, gap.Round(time.Millisecond))
	stop()
	ws := append(ws1, ws2...)
	checkRun(t, c, h, ws, int(newMain))
}
