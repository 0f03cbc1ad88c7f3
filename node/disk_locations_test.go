package node

import (
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/node/store"
)

// After a disk fault heals, each location's groups take roles again only from that
// location's directories from its answer to a join of the new life on: a guest location
// that answered first waits for the own location's join, which releases the node; a join
// sent as the old instance, or one that raced another fault, releases nothing; a location
// not joined again stays held.
func TestRolesHeldPerLocationAfterANewLife(t *testing.T) {
	n := &Node{cfg: Config{ID: 1, Location: "loc1"}, disk: newDiskState(), log: zerolog.Nop(), metrics: newMetrics()}
	own, loc2, loc3 := &link{loc: "loc1", own: true}, &link{loc: "loc2"}, &link{loc: "loc3"}
	held := func(loc string, index uint64, want bool) {
		t.Helper()
		if got := n.rolesHeld(loc, index); got != want {
			t.Fatalf("rolesHeld(%s, %d) = %v, want %v", loc, index, got, want)
		}
	}
	held("loc2", 1, false) // no fault since the start

	n.noteDiskFault(fmt.Errorf("%w: no space left on device", store.ErrDiskFault))
	held("loc1", 100, true)
	held("loc2", 100, true)
	n.followDisk(nil) // the disk works again
	if !n.rejoinDue() {
		t.Fatal("no rejoin due after the disk healed")
	}
	old, _ := n.identity()
	faults := n.diskFaults()
	if err := n.newLife(); err != nil {
		t.Fatal(err)
	}
	life, inc := n.identity()
	if life == old || inc != 1 {
		t.Fatalf("new life %q incarnation %d, want a new instance at incarnation 1 (was %q)", life, inc, old)
	}

	n.joinedAt(loc2, 7, faults, life) // a guest location answers first
	held("loc2", 7, true)             // the own location has not answered yet
	n.joinedAt(own, 3, faults, old)   // an answer to a join of the old life
	held("loc1", 100, true)
	n.joinedAt(own, 10, faults, life)
	if n.rejoinDue() {
		t.Fatal("a rejoin is still due after the own location's join")
	}
	held("loc1", 9, true) // fetched before the join: may name this node main in the lost epoch
	held("loc1", 10, false)
	held("loc2", 6, true)
	held("loc2", 7, false)
	held("loc3", 100, true) // not joined again yet
	n.joinedAt(loc3, 4, faults, life)
	held("loc3", 4, false)

	// A join that raced another fault releases nothing.
	n.noteDiskFault(fmt.Errorf("%w: input/output error", store.ErrDiskFault))
	n.joinedAt(own, 20, faults, life)
	held("loc1", 20, true)
	held("loc3", 4, true)
}
