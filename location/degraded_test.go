package location

import (
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A main whose heartbeats report a disk fault is shown degraded at once and replaced (a
// non-automatic promotion, recorded as disk_fault since its first degraded heartbeat) once it
// has been degraded for down-after; a heartbeat without the fault makes it up again and
// stops that.
func TestDegradedMainIsReplacedAfterDownAfter(t *testing.T) {
	const downAfter = time.Second
	t0 := time.Unix(1_000_000, 0)
	lt := newLeaderTerm(t0)
	voters := []uint16{2, 3, 4}
	g := command.GroupInfo{Server: 1, Epoch: 1, Main: 1, Active: command.Config{Version: 2, Voters: voters}}
	for _, v := range voters {
		g.Siblings = append(g.Siblings, command.Member{Node: v, State: command.SiblingVoting})
	}
	report := command.GroupReport{Server: 1, Role: command.RoleMain, Epoch: 1}
	for _, v := range voters {
		report.Siblings = append(report.Siblings, command.SiblingProgress{Node: v, Recent: true})
	}
	var gen uint64
	beat := func(at time.Time, degraded string) {
		gen++
		lt.noteHeartbeat(command.Heartbeat{Node: 1, Generation: gen, Degraded: degraded, Groups: []command.GroupReport{report}}, at)
		for _, v := range voters {
			lt.noteHeartbeat(command.Heartbeat{Node: v, Generation: gen}, at)
		}
	}
	plan := func(now time.Time) []promotionAction {
		d := command.Directory{Groups: []command.GroupInfo{g}}
		for id := uint16(1); id <= 4; id++ {
			state, _ := lt.nodeState(nodeRecord{ID: id}, now, downAfter)
			d.Nodes = append(d.Nodes, command.NodeInfo{ID: id, State: state})
		}
		return planPromotionActions(lt, d, lt.snapshotReports(), now, downAfter)
	}
	const reason = "group 1: disk fault: write-ahead log: no space left on device"
	for at := t0; at.Before(t0.Add(downAfter)); at = at.Add(downAfter / 4) {
		beat(at, reason)
		if state, _ := lt.nodeState(nodeRecord{ID: 1}, at, downAfter); state != command.NodeDegraded {
			t.Fatalf("node 1 with a disk fault is %q, want degraded", state)
		}
		if a := plan(at); len(a) > 0 {
			t.Fatalf("a promotion %+v after %v of degradation, before down-after", a, at.Sub(t0))
		}
	}
	at := t0.Add(downAfter)
	beat(at, reason)
	a := plan(at)
	if len(a) != 1 || !a[0].start || a[0].auto || !strings.Contains(a[0].why, "disk") {
		t.Fatalf("after down-after degraded: %+v, want one non-automatic promotion for the disk", a)
	}
	if a[0].reason != command.ReasonDiskFault || !a[0].since.Equal(t0) {
		t.Fatalf("promotion recorded as %q suspected at %v, want %q at the first degraded heartbeat %v",
			a[0].reason, a[0].since, command.ReasonDiskFault, t0)
	}
	if r, d := lt.degradedFor(1, at); r != reason || d != downAfter {
		t.Fatalf("degradedFor: %q for %v", r, d)
	}
	beat(at.Add(downAfter/4), "")
	if state, _ := lt.nodeState(nodeRecord{ID: 1}, at.Add(downAfter/4), downAfter); state != command.NodeUp {
		t.Fatalf("node 1 after its disk healed is %q, want up", state)
	}
	if r, _ := lt.degradedFor(1, at.Add(downAfter/4)); r != "" {
		t.Fatalf("healed node still degraded: %q", r)
	}
}
