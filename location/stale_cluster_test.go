package location

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// With real raft: a node that stops heartbeating has its voting copies demoted to stale
// after copy-timeout (not before), status shows them as syncing with stale:true, and once
// the node reports rebuilt copies (new copy IDs) they become learners and then voters again
// with the new IDs.
func TestClusterStaleCopyDemotedAndRebuilt(t *testing.T) {
	const copyTimeout = 2 * time.Second
	tc := newTestCluster(t, 3, func(c *Config) { c.CopyTimeout = copyTimeout })
	tc.leader(10 * time.Second)
	var nodes []*fakeNode
	for i := uint16(1); i <= 5; i++ {
		n := &fakeNode{id: i, instance: fmt.Sprintf("inst-%d", i), ctls: tc.httpAddrs()}
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	var beating sync.WaitGroup
	stops := map[uint16]chan struct{}{}
	startBeats := func(n *fakeNode) {
		stops[n.id] = make(chan struct{})
		beating.Add(1)
		go n.run(stops[n.id], &beating)
	}
	t.Cleanup(func() {
		for _, s := range stops {
			select {
			case <-s:
			default:
				close(s)
			}
		}
		beating.Wait()
	})
	for _, n := range nodes {
		startBeats(n)
	}
	var d command.Directory
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		var err error
		if d, err = tc.directory(); err != nil {
			return err
		}
		if !converged(d, 5) {
			return fmt.Errorf("not converged: %+v", d.Groups)
		}
		return nil
	})
	var held []uint16 // groups node 5 votes in
	for _, g := range d.Groups {
		if slices.Contains(g.Active.Voters, 5) {
			held = append(held, g.Server)
		}
	}
	if len(held) == 0 {
		t.Fatalf("node 5 votes nowhere: %+v", d.Groups)
	}

	// Node 5 goes silent.
	close(stops[5])
	stoppedAt := time.Now()
	eventuallyOK(t, 30*time.Second, "node 5's copies stale", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		for _, s := range held {
			g := d.Group(s)
			m := member(g, 5)
			if m == nil || m.State != command.SiblingStale || slices.Contains(g.Voters(), 5) {
				return fmt.Errorf("group %d: member %+v, voters %v", s, m, g.Voters())
			}
			if m.StaleCopyID != copyName(s, 5) {
				return fmt.Errorf("group %d: stale copy ID %q, want %q", s, m.StaleCopyID, copyName(s, 5))
			}
		}
		return nil
	})
	// The last beat went out at most one period before the stop.
	if took := time.Since(stoppedAt); took < copyTimeout-100*time.Millisecond {
		t.Fatalf("copies demoted %v after the node went silent; copy-timeout is %v", took, copyTimeout)
	}
	var st command.Status
	if code, body, err := call("GET", tc.currentLeader().httpAddr, pathStatus, nil, &st); err != nil || code != 200 {
		t.Fatalf("status: %d %s %v", code, body, err)
	}
	for _, sg := range st.Groups {
		for _, ss := range sg.Siblings {
			if ss.Node == 5 && slices.Contains(held, sg.Server) && (ss.State != command.SiblingSyncing || !ss.Stale) {
				t.Fatalf("status of group %d shows node 5 as %+v; want syncing with stale:true", sg.Server, ss)
			}
		}
	}

	// Node 5 comes back with rebuilt copies (new IDs): learners, then voters with the new IDs.
	nodes[4].mu.Lock()
	nodes[4].disk = "-rebuilt"
	nodes[4].mu.Unlock()
	startBeats(nodes[4])
	eventuallyOK(t, 30*time.Second, "node 5 voting again with its new copies", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		for _, s := range held {
			g := d.Group(s)
			m := member(g, 5)
			if m == nil || m.State != command.SiblingVoting || m.CopyID != copyName(s, 5)+"-rebuilt" || m.StaleCopyID != "" {
				return fmt.Errorf("group %d: member %+v", s, m)
			}
		}
		return nil
	})
}

// With real raft (docs/replication.md case 5 D): a voting node that comes back with another
// disk (new copy IDs) is demoted to a learner by a committed config change, and votes again
// with the new copy IDs.
func TestClusterAmnesiacCopyDemotedThenVotesAgain(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.leader(10 * time.Second)
	var nodes []*fakeNode
	for i := uint16(1); i <= 4; i++ {
		n := &fakeNode{id: i, instance: fmt.Sprintf("inst-%d", i), ctls: tc.httpAddrs()}
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	stop := make(chan struct{})
	var beating sync.WaitGroup
	t.Cleanup(func() { close(stop); beating.Wait() })
	for _, n := range nodes {
		beating.Add(1)
		go n.run(stop, &beating)
	}
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if !converged(d, 4) {
			return fmt.Errorf("not converged: %+v", d.Groups)
		}
		return nil
	})
	// Group 1's voter 2 loses its disk: it reports new copy IDs from now on.
	nodes[1].mu.Lock()
	nodes[1].disk = "-new-disk"
	nodes[1].mu.Unlock()
	// It ends voting again, recorded with its new copy ...
	eventuallyOK(t, 30*time.Second, "node 2 voting again with its new copy", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		g := d.Group(1)
		m := member(g, 2)
		if m == nil || m.State != command.SiblingVoting || m.CopyID != copyName(1, 2)+"-new-disk" || g.Pending != nil {
			return fmt.Errorf("group 1: %+v", g)
		}
		return nil
	})
	// ... only by way of a committed demotion (the pending phase may be too short to watch).
	if n := tc.currentLeader().c.fsm.commandCounts()[[2]string{kindDemote, "ok"}]; n == 0 {
		t.Fatal("node 2 votes with a new copy ID but no demote command was applied")
	}
}
