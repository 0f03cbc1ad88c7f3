package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// TestLocationsLoseControllers: `sibyl dev --locations 3 --nodes 6` with its 10 ms WAN
// delay and keyed writers on every group, entering at nodes of several locations. All
// controllers of loc1 are killed with kill -9: every group, those homed in loc1 included,
// keeps acknowledging writes (the longest gap between acknowledged writes of each group
// after the kill is at most 2 s), the other locations' controllers still answer
// /v1/status and show loc1 unreachable, and a client at a node of another location still
// reaches loc1's mains. loc1's controllers are then started again on their data: loc1 elects
// a leader, its status serves its groups again, and the other locations see it reachable.
// No acknowledged write is lost and the history is linearizable. It runs open and in the
// tls mode, as TestLocationsGroupsSpanLocations does.
func TestLocationsLoseControllers(t *testing.T) {
	for _, mode := range clusterModes {
		if mode.name == "secured" {
			continue // the tls mode has every setting of the secured one
		}
		t.Run(mode.name, func(t *testing.T) {
			o := withMode(Options{Locations: 3, Nodes: 6}, mode.opts)
			testLoseControllers(t, o)
		})
	}
}

// nodesByLocation maps every node ID to its location, and every location to its nodes.
func nodesByLocation(t *testing.T, c *Cluster) (map[uint16]string, map[string][]int) {
	where, at := map[uint16]string{}, map[string][]int{}
	for _, p := range c.Nodes {
		id := mustAtoi(t, p.Name())
		where[uint16(id)] = p.Location
		at[p.Location] = append(at[p.Location], id)
	}
	return where, at
}

// votingCount is the number of voting siblings of g.
func votingCount(g command.StatusGroup) int {
	n := 0
	for _, s := range g.Siblings {
		if s.State == command.SiblingVoting {
			n++
		}
	}
	return n
}

// waitGroupsServed waits until each of groups is served at its home with at least voting
// voting siblings, and returns them.
func waitGroupsServed(t *testing.T, c *Cluster, homes map[uint16]string, voting int, d time.Duration) map[uint16]command.StatusGroup {
	t.Helper()
	out := map[uint16]command.StatusGroup{}
	waitFor(t, d, fmt.Sprintf("groups %v served at their homes with %d voting siblings", homes, voting), func() bool {
		for id, home := range homes {
			g, _, err := groupAtHome(c, home, id)
			if err != nil || votingCount(g) < voting {
				return false
			}
			out[id] = g
		}
		return true
	})
	return out
}

// NodeClient connects to node id alone without routing (client.Options.NoRouting): every
// request enters at that node, which forwards it to the group's main or serves it.
func (c *Cluster) NodeClient(id int) *client.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{Addrs: []string{c.Node(id).HTTP}, Token: c.token, TLS: c.tls, NoRouting: true})
	if err != nil {
		c.t.Fatalf("dial node %d: %v", id, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// locationView is location name as controller p's /v1/status shows it.
func locationView(c *Cluster, p *Proc, name string) (command.StatusLocation, error) {
	st, err := c.StatusFrom(p)
	if err != nil {
		return command.StatusLocation{}, err
	}
	for _, l := range st.Locations {
		if l.Name == name {
			return l, nil
		}
	}
	return command.StatusLocation{}, fmt.Errorf("%s's status lists no location %s", p.Name(), name)
}

func testLoseControllers(t *testing.T, o Options) {
	c := StartCluster(t, o)
	where, at := nodesByLocation(t, c)
	homes := map[uint16]string{}
	for id, loc := range where {
		homes[id] = loc // a node's first join at its location creates its group there
	}
	groups := waitGroupsServed(t, c, homes, 3, 90*time.Second)
	for id := uint16(1); id <= 6; id++ {
		g := groups[id]
		t.Logf("group %d (home %s): main %d, siblings %+v", id, g.Home, *g.Main, g.Siblings)
	}

	// Writers on every group: two at the main's own node, two at a node of each other
	// location (every location's entry points, loc1's included).
	h := NewHistory()
	ws := map[uint16][]*writer{}
	var all []*writer
	var stops []func()
	for id := uint16(1); id <= 6; id++ {
		var entries []int
		entries = append(entries, int(*groups[id].Main))
		for _, loc := range []string{"loc1", "loc2", "loc3"} {
			if loc != where[*groups[id].Main] {
				entries = append(entries, at[loc][int(id)%len(at[loc])])
			}
		}
		w, stop := startWritersFrom(t, c, h, command.ServerID(id), 3, entries, int(id)*10)
		ws[id], all, stops = w, append(all, w...), append(stops, stop)
	}
	stop := stopOnce(stops...)
	defer stop()
	waitFor(t, 60*time.Second, "50 writes to every group", func() bool {
		for _, w := range ws {
			if acked(w) < 50 {
				return false
			}
		}
		return true
	})
	// A baseline of 6 s with every controller up, to set the gaps after the kill against.
	baseFrom, baseStart := h.Now(), time.Now()
	waitFor(t, 30*time.Second, "6 s of writes with every controller up", func() bool { return time.Since(baseStart) >= 6*time.Second })
	var baseline time.Duration
	for _, w := range ws {
		baseline = max(baseline, longestGap(w, baseFrom, h.Now()))
	}
	t.Logf("baseline, every controller up: longest gap between acknowledged writes of a group over 6 s: %v", baseline.Round(time.Millisecond))

	// kill -9 every controller of loc1.
	var loc1 []*Proc
	for _, p := range c.Controllers {
		if p.Location == "loc1" {
			loc1 = append(loc1, p)
		}
	}
	before := map[uint16]int64{}
	for id, w := range ws {
		before[id] = acked(w)
	}
	for id, home := range homes {
		g, _, err := groupAtHome(c, home, id)
		if err != nil {
			t.Fatal(err)
		}
		groups[id] = g // the epochs just before the kill
	}
	meter := startStallMeter(t)
	killAt := h.Now()
	killed := time.Now()
	for _, p := range loc1 {
		c.Kill(p)
	}

	// The other locations' controllers answer and come to show loc1 unreachable.
	var others []*Proc
	for _, p := range c.Controllers {
		if p.Location != "loc1" {
			others = append(others, p)
		}
	}
	unreachable := until(t, 30*time.Second, "every other controller showing loc1 unreachable", func() string {
		for _, p := range others {
			l, err := locationView(c, p, "loc1")
			if err != nil {
				return err.Error()
			}
			if l.Reachable {
				return fmt.Sprintf("%s still shows loc1 reachable", p.Name())
			}
		}
		return ""
	})
	t.Logf("every controller of loc2 and loc3 answers /v1/status and shows loc1 unreachable %v after the kill", unreachable.Round(time.Millisecond))

	// Every group keeps acknowledging writes: measured over at least 12 s after the kill,
	// past the ads' TTL (10 s) and many times down-after, so a role or a route that lapses
	// for lack of controllers shows.
	waitFor(t, 60*time.Second, "12 s and 100 writes to every group after the kill", func() bool {
		if time.Since(killed) < 12*time.Second {
			return false
		}
		for id, w := range ws {
			if acked(w) < before[id]+100 {
				return false
			}
		}
		return true
	})
	lossEnd := h.Now()
	stall := meter.stall()
	t.Logf("the test process, which runs the writers, stalled for at most %v after the kill", stall.Round(time.Millisecond))
	for id := uint16(1); id <= 6; id++ {
		gap, at := longestGapAt(ws[id], killAt, lossEnd)
		t.Logf("group %d (home %s, main %d in %s): %d writes acknowledged in %v after the kill, longest gap %v from %v after the kill",
			id, homes[id], *groups[id].Main, where[*groups[id].Main], acked(ws[id])-before[id],
			time.Duration(lossEnd-killAt).Round(time.Millisecond), gap.Round(time.Millisecond), time.Duration(at-killAt).Round(time.Millisecond))
		if gap > 2*time.Second+stall {
			t.Errorf("group %d: longest gap between acknowledged writes after loc1's controllers were killed: %v, want at most 2 s (+ the test's own stall %v)", id, gap, stall)
		}
	}

	// Past the ads' TTL, a client entering at a node of another location still reaches each
	// of loc1's mains, in the epoch it had before the kill.
	for id, g := range groups {
		if where[*g.Main] != "loc1" {
			continue
		}
		for _, loc := range []string{"loc2", "loc3"} {
			via := at[loc][0]
			cl := c.NodeClient(via)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s := int64(id)
			data, _ := json.Marshal(map[string]string{"via": loc})
			rep, err := cl.DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: "blob", Server: &s, Data: data,
				Key: fmt.Sprintf("locloss-%d-%s", id, loc)})
			cancel()
			if err != nil {
				t.Fatalf("create in group %d (main %d, loc1) through node %d (%s) with loc1's controllers gone: %v", id, *g.Main, via, loc, err)
			}
			if rep.Epoch != g.Epoch {
				t.Errorf("group %d: a write through node %d in epoch %d, want %d: no controller could have raised it", id, via, rep.Epoch, g.Epoch)
			}
		}
	}

	// Start loc1's controllers again on their data: loc1 elects a leader and serves its
	// groups' status; the other locations see it again.
	for _, p := range loc1 {
		c.Restart(p)
	}
	for _, p := range loc1 {
		c.WaitListening(p, 15*time.Second)
	}
	restarted := time.Now()
	back := map[uint16]string{}
	for id, home := range homes {
		if home == "loc1" {
			back[id] = home
		}
	}
	waitGroupsServed(t, c, back, 3, 30*time.Second)
	leader := until(t, 30*time.Second, "loc1 leading and reachable from every location", func() string {
		for _, p := range c.Controllers {
			l, err := locationView(c, p, "loc1")
			if err != nil {
				return err.Error()
			}
			if l.Leader == nil || !l.Reachable {
				return fmt.Sprintf("%s shows loc1 %+v", p.Name(), l)
			}
		}
		return ""
	})
	t.Logf("loc1's controllers restarted: its groups served, and loc1 reachable with a leader from every controller, %v after they listened (the last check took %v)",
		time.Since(restarted).Round(time.Millisecond), leader.Round(time.Millisecond))
	for id, g := range groups {
		now, _, err := groupAtHome(c, homes[id], id)
		if err != nil {
			t.Fatal(err)
		}
		if *now.Main != *g.Main || now.Epoch != g.Epoch {
			t.Errorf("group %d (home %s): main %d in epoch %d after loc1's controllers came back, was %d in epoch %d: nothing failed to promote for",
				id, homes[id], *now.Main, now.Epoch, *g.Main, g.Epoch)
		}
	}
	after := map[uint16]int64{}
	for id, w := range ws {
		after[id] = acked(w)
	}
	waitFor(t, 30*time.Second, "50 writes to every group after the restart", func() bool {
		for id, w := range ws {
			if acked(w) < after[id]+50 {
				return false
			}
		}
		return true
	})
	total := longestGap(all, killAt, h.Now())
	t.Logf("from the kill to after the restart, the longest gap between acknowledged writes of all groups: %v", total.Round(time.Millisecond))
	stop()
	checkRun(t, c, h, all, at["loc2"][0])
}

// stallMeter measures how late the test process runs: a goroutine sleeps 10 ms at a time
// and keeps the longest overshoot. The writers run in this process, so a stall of it (a
// machine shared with other work, a garbage collection under -race) is a gap between
// acknowledged writes that no Sibyl process caused; the gap bounds allow for it.
type stallMeter struct {
	longest atomic.Int64
	done    chan struct{}
}

func startStallMeter(t *testing.T) *stallMeter {
	m := &stallMeter{done: make(chan struct{})}
	go func() {
		for {
			start := time.Now()
			select {
			case <-m.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if over := int64(time.Since(start) - 10*time.Millisecond); over > m.longest.Load() {
				m.longest.Store(over)
			}
		}
	}()
	t.Cleanup(func() { close(m.done) })
	return m
}

// reset starts a new measure; stall returns the longest stall since.
func (m *stallMeter) reset()               { m.longest.Store(0) }
func (m *stallMeter) stall() time.Duration { return time.Duration(m.longest.Load()) }
