package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A node restarted while its own location has no controller follows the groups homed
// elsewhere from the locations it learnt before (docs/locations.md "A location without
// controllers"): its --controllers name only its own location's, which do not answer, so
// it finds the others through what it recorded in its data directory.
func TestRestartedNodeFollowsOtherHomesWhileItsLocationHasNoController(t *testing.T) {
	w := newRehomeWorld(t)
	// A loc1 node that votes in group 3, homed in loc2, and is not its main.
	g3 := w.group("loc2", 3)
	var target uint16
	for _, v := range g3.Active.Voters {
		if (v == 1 || v == 2) && v != g3.Main {
			target = v
		}
	}
	if target == 0 {
		t.Fatalf("no loc1 node among group 3's voters %v", g3.Active.Voters)
	}
	rep, err := w.do(3, command.Request{Op: command.OpCreate, Type: "doc", Data: json.RawMessage(`"v0"`), Server: i64p(3)})
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID
	// The node has followed loc2 (it learnt loc2's controllers) before it goes down.
	eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d holds the create", target), func() error {
		return copyAt(w, target, 3, rep.Seq)
	})

	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].stop(id)
	}
	rn := w.nodes[target]
	rn.stop()
	w.nodes[target] = startRehomeNode(t, rn.addr, rn.cfg)

	// Writes to group 3 go on; the restarted node takes its role from loc2 and holds them.
	var last uint64
	for i := 1; i <= 5; i++ {
		rep, err := w.do(3, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(fmt.Sprintf(`"v%d"`, i))})
		if err != nil {
			t.Fatalf("write %d to group 3: %v", i, err)
		}
		last = rep.Seq
	}
	start := time.Now()
	eventuallyOK(t, 15*time.Second, fmt.Sprintf("restarted node %d holds group 3's writes", target), func() error {
		return copyAt(w, target, 3, last)
	})
	t.Logf("node %d followed group 3 (homed in loc2) %v after the writes, with no loc1 controller", target, time.Since(start).Round(time.Millisecond))
}

// copyAt checks that node id's copy of group server holds seq and names the group's home.
func copyAt(w *rehomeWorld, id, server uint16, seq uint64) error {
	var view command.GroupView
	code, body, err := secretCall(rehomeSecret, http.MethodGet, w.nodes[id].addr, fmt.Sprintf("/v1/internal/group?server=%d", server), nil, &view)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("group view of node %d: %d %s %v", id, code, body, err)
	}
	if view.Group == nil || view.Copy == nil {
		return fmt.Errorf("node %d: group %d %+v, copy %+v", id, server, view.Group, view.Copy)
	}
	if view.Copy.LastSeq < seq || !slices.Contains(view.Group.Active.Voters, id) {
		return fmt.Errorf("node %d: copy at seq %d (want %d), voters %v", id, view.Copy.LastSeq, seq, view.Group.Active.Voters)
	}
	return nil
}
