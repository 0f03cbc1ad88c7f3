package scenarios

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestLocationsRehome: `sibyl dev --locations 3 --nodes 6` (10 ms WAN delay) with the
// cluster secret and an admin token. Keyed writers run on group 1, homed in loc1, entering
// at nodes of loc2 and loc3. kill -9 of every loc1 controller and of group 1's main leaves
// the group without a main that anyone may promote (every write fails); `rehome` to loc2 (refused without the
// admin token) promotes a copy and writes resume. loc1's controllers restarted on their
// raft state drop the group as moved and never take it back; writes go on. No
// acknowledged write is lost and the history is linearizable. Logs the time from the
// rehome call to the first write acknowledged after it.
func TestLocationsRehome(t *testing.T) {
	o := withMode(Options{Locations: 3, Nodes: 6}, clusterModes[1].opts)
	c := StartCluster(t, o)
	var g1 command.StatusGroup
	waitFor(t, 60*time.Second, "group 1 (loc1) at 3 voting siblings", func() bool {
		g, _, err := groupAtHome(c, "loc1", 1)
		if err != nil {
			return false
		}
		g1 = g
		return votingOf(g) >= 3
	})
	main1 := int(*g1.Main)
	t.Logf("group 1 (home loc1): main %d, siblings %+v", main1, g1.Siblings)

	h := NewHistory()
	ws, stopWriters := startWritersFrom(t, c, h, 1, 8, []int{2, 3, 5, 6}, 0)
	stop := stopOnce(stopWriters)
	defer stop()
	waitFor(t, 30*time.Second, "200 writes to group 1", func() bool { return acked(ws) >= 200 })

	for _, p := range c.Controllers {
		if p.Location == "loc1" {
			c.Kill(p)
		}
	}
	c.Kill(c.Node(main1))
	killed, failed := acked(ws), failedOf(ws)
	// Nobody may promote the group: its home has no controller. Every write fails.
	waitFor(t, 40*time.Second, "a failed write per writer after the kill", func() bool { return failedOf(ws) >= failed+int64(len(ws)) })
	if n := acked(ws); n > killed+int64(len(ws)) {
		t.Fatalf("%d writes acknowledged after the kill with no main, more than the %d in flight", n-killed, len(ws))
	}
	t.Logf("group 1 without a main: writes failing (%s)", ws[0].failures())

	srv := int64(1)
	rehome := &command.Request{Op: command.OpRehome, Server: &srv, Location: "loc2"}
	if _, err := c.ClientWithToken("not-the-admin-token", 2).Do(context.Background(), rehome); command.CodeOf(err) != command.CodeUnauthorized {
		t.Fatalf("rehome with a wrong token: %v, want unauthorized", err)
	}
	before := acked(ws)
	callAt := h.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Admin(2).Do(ctx, rehome); err != nil {
		t.Fatalf("rehome of group 1 to loc2: %v", err)
	}
	answeredAt := h.Now()
	waitFor(t, 30*time.Second, "100 writes to group 1 after the rehome", func() bool { return acked(ws) >= before+100 })
	first := firstAckAfter(t, ws, callAt)
	g, st, err := groupAtHome(c, "loc2", 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.Home != "loc2" || int(*g.Main) == main1 || g.Epoch < command.EpochBand(1) {
		t.Fatalf("group 1 at loc2 after the rehome: home %q, main %d, epoch %d", g.Home, *g.Main, g.Epoch)
	}
	rehomed := false
	for _, p := range st.Promotions {
		rehomed = rehomed || (p.Server == 1 && p.Reason == command.ReasonRehome && p.To == *g.Main)
	}
	if !rehomed {
		t.Errorf("loc2's promotion history has no rehome of group 1: %+v", st.Promotions)
	}
	t.Logf("rehome answered in %v; first acknowledged write %v after the call; node %d main of group 1 in epoch %d (home loc2)",
		time.Duration(answeredAt-callAt).Round(time.Millisecond), time.Duration(first-callAt).Round(time.Millisecond), *g.Main, g.Epoch)

	var loc1 []*Proc
	for _, p := range c.Controllers {
		if p.Location == "loc1" {
			c.Restart(p)
			loc1 = append(loc1, p)
		}
	}
	for _, p := range loc1 {
		c.WaitListening(p, 30*time.Second)
	}
	waitFor(t, 30*time.Second, "loc1's status shows group 1 moved to loc2", func() bool {
		for _, p := range loc1 {
			st, err := c.StatusFrom(p)
			if err != nil {
				continue
			}
			for _, sg := range st.Groups {
				// Until a copy's report tells it of the move, loc1 may list the group as it
				// left it, but never acts for it: no new epoch, no other main.
				if sg.Server == 1 && (sg.Epoch != g1.Epoch || sg.Main == nil || int(*sg.Main) != main1) {
					t.Fatalf("loc1's restarted controllers acted for group 1: %+v (before the kill: epoch %d, main %d)", sg, g1.Epoch, main1)
				}
			}
			for _, m := range st.Moved {
				if m.Server == 1 && m.Home == "loc2" && m.HomeGen == 1 {
					return true
				}
			}
		}
		return false
	})
	back := acked(ws)
	waitFor(t, 30*time.Second, "100 writes to group 1 with loc1 back", func() bool { return acked(ws) >= back+100 })
	if g, _, err := groupAtHome(c, "loc2", 1); err != nil || g.Home != "loc2" {
		t.Fatalf("group 1 with loc1 back: %+v %v, want homed in loc2", g, err)
	}
	stop()
	checkRun(t, c, h, ws, 2)
}

func votingOf(g command.StatusGroup) int {
	n := 0
	for _, s := range g.Siblings {
		if s.State == command.SiblingVoting {
			n++
		}
	}
	return n
}

// failedOf is how many of the writers' requests failed, whatever the code.
func failedOf(ws []*writer) int64 {
	var n int64
	for _, w := range ws {
		w.codes.Range(func(_, v any) bool {
			n += v.(*atomic.Int64).Load()
			return true
		})
	}
	return n
}

// firstAckAfter is the history time of the first acknowledgement of a write sent at or
// after call.
func firstAckAfter(t *testing.T, ws []*writer, call int64) int64 {
	first := int64(-1)
	for _, w := range ws {
		w.mu.Lock()
		for i, c := range w.ackCalls {
			if c >= call && (first < 0 || w.ackTimes[i] < first) {
				first = w.ackTimes[i]
			}
		}
		w.mu.Unlock()
	}
	if first < 0 {
		t.Fatalf("no write acknowledged after history time %d", call)
	}
	return first
}
