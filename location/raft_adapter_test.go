package location

// Contract tests of consensus as raftNode implements it: three controllers' raft over
// hashicorp/raft's in-memory transport, with real raft-boltdb files and file snapshot
// stores in t.TempDir(). Every test runs inside a testing/synctest bubble, so raft's
// heartbeat, election, lease and snapshot timers run on the bubble's virtual clock: an
// election or minutes of raft time cost only the CPU they use, and nothing sleeps in real
// time. Each test shuts down every raft it started (adapterCluster's cleanup), which the
// bubble requires: synctest.Test waits for all of its goroutines to exit.

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// electionWithin bounds, in raft time, how long electing a leader may take: after a start
// or the loss of a leader one or two election timeouts are usual; ten leave room for split
// votes.
const electionWithin = 10 * defaultRaftTimeout

type adapterMember struct {
	id    string
	fsm   *fsm
	node  *raftNode
	trans *raft.InmemTransport
}

// adapterCluster is three controllers' raft, each with its own data directory, on
// in-memory transports whose address is the controller's ID.
type adapterCluster struct {
	t     *testing.T
	log   hclog.Logger
	peers map[string]string // id -> in-memory address
	dirs  map[string]string
	up    map[string]*adapterMember
}

// newAdapterCluster starts c1, c2 and c3 on fresh data directories, so each bootstraps.
func newAdapterCluster(t *testing.T) *adapterCluster {
	c := &adapterCluster{
		t: t, log: newHclogAdapter(newTestLogger(t)),
		peers: map[string]string{}, dirs: map[string]string{}, up: map[string]*adapterMember{},
	}
	base := t.TempDir()
	for _, id := range []string{"c1", "c2", "c3"} {
		c.peers[id] = id
		c.dirs[id] = filepath.Join(base, id)
	}
	t.Cleanup(c.stopAll)
	for _, id := range []string{"c1", "c2", "c3"} {
		c.start(id)
	}
	return c
}

// start opens id's raft on its data directory over a new transport connected both ways
// to every running member.
func (c *adapterCluster) start(id string) *adapterMember {
	c.t.Helper()
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(c.peers[id]))
	for _, o := range c.up {
		trans.Connect(o.trans.LocalAddr(), o.trans)
		o.trans.Connect(addr, trans)
	}
	m := &adapterMember{id: id, fsm: newFSM(), trans: trans}
	n, err := openRaft(raftSetup{
		ID: id, Peers: c.peers, DataDir: c.dirs[id], Timeout: defaultRaftTimeout, Logger: c.log, Transport: trans,
	}, m.fsm)
	if err != nil {
		c.t.Fatalf("open raft of %s: %v", id, err)
	}
	m.node = n
	c.up[id] = m
	return m
}

// stop shuts id's raft down (which closes its transport and store) and unroutes it.
func (c *adapterCluster) stop(id string) {
	c.t.Helper()
	m := c.up[id]
	delete(c.up, id)
	for _, o := range c.up {
		o.trans.Disconnect(m.trans.LocalAddr())
	}
	if err := m.node.shutdown(); err != nil {
		c.t.Errorf("shut down %s: %v", id, err)
	}
}

func (c *adapterCluster) stopAll() {
	for _, m := range c.members() {
		c.stop(m.id)
	}
}

// isolate cuts every route to and from id, both ways.
func (c *adapterCluster) isolate(id string) {
	m := c.up[id]
	m.trans.DisconnectAll()
	for _, o := range c.others(m) {
		o.trans.Disconnect(m.trans.LocalAddr())
	}
}

func (c *adapterCluster) heal(id string) {
	m := c.up[id]
	for _, o := range c.others(m) {
		m.trans.Connect(o.trans.LocalAddr(), o.trans)
		o.trans.Connect(m.trans.LocalAddr(), m.trans)
	}
}

// members returns the running members in ID order.
func (c *adapterCluster) members() []*adapterMember {
	var out []*adapterMember
	for _, m := range c.up {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *adapterMember) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	return out
}

// others returns the running members other than m.
func (c *adapterCluster) others(m *adapterMember) []*adapterMember {
	return slices.DeleteFunc(c.members(), func(o *adapterMember) bool { return o == m })
}

// leader waits until exactly one running member leads and every running one follows it.
func (c *adapterCluster) leader(within time.Duration) *adapterMember {
	c.t.Helper()
	return leaderAmong(c.t, within, c.members())
}

// leaderAmong waits until exactly one of ms leads and all of ms follow it.
func leaderAmong(t *testing.T, within time.Duration, ms []*adapterMember) *adapterMember {
	t.Helper()
	var lead *adapterMember
	waitFor(t, within, "one leader that everyone follows", func() error {
		lead = nil
		for _, m := range ms {
			if !m.node.isLeader() {
				continue
			}
			if lead != nil {
				return fmt.Errorf("%s and %s both lead", lead.id, m.id)
			}
			lead = m
		}
		if lead == nil {
			return errors.New("no leader")
		}
		for _, m := range ms {
			if got := m.node.leaderID(); got != lead.id {
				return fmt.Errorf("%s follows %q, not %s", m.id, got, lead.id)
			}
		}
		return nil
	})
	return lead
}

// waitFor advances the bubble's virtual clock in small steps until check passes, and fails
// the test once more than within of it has passed.
// Inside a synctest bubble time.Sleep waits for no real time: the fake clock jumps ahead as
// soon as every goroutine of the bubble is blocked, and synctest.Wait lets the raft
// goroutines finish what the step started before check looks.
func waitFor(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	start := time.Now()
	for {
		synctest.Wait()
		err := check()
		if err == nil {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v of raft time: %v", what, within, err)
		}
		time.Sleep(within / 500)
	}
}

// stopCaughtUpFollower proposes joins 1 to 3 on the leader, waits until a follower applied
// them and stops it. It returns the leader, the stopped follower and its last log index.
func (c *adapterCluster) stopCaughtUpFollower() (lead, f *adapterMember, last uint64) {
	c.t.Helper()
	lead = c.leader(electionWithin)
	for _, id := range nodeIDs(1, 3) {
		propose(c.t, lead, join(id))
	}
	f = c.others(lead)[0]
	waitFor(c.t, time.Second, "the follower applied the joins", func() error { return sameDirectory(c.t, lead, f) })
	last = f.node.stats().LastIndex
	c.stop(f.id)
	return lead, f, last
}

func propose(t *testing.T, m *adapterMember, cmd dirCommand) uint64 {
	t.Helper()
	idx, err := m.node.propose(cmd)
	if err != nil {
		t.Fatalf("propose %s on %s: %v", cmd.kind(), m.id, err)
	}
	return idx
}

// proposeJoins proposes join(id) for every id from 32 goroutines at once, so raft batches
// them as it batches a busy leader's commands.
func proposeJoins(t *testing.T, m *adapterMember, ids []uint16) {
	t.Helper()
	const workers = 32
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ids); i += workers {
				if _, err := m.node.propose(join(ids[i])); err != nil {
					errs <- fmt.Errorf("propose join %d on %s: %w", ids[i], m.id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func nodeIDs(from, to uint16) []uint16 {
	var ids []uint16
	for id := from; id <= to; id++ {
		ids = append(ids, id)
	}
	return ids
}

// hasNodes checks that m's directory holds every node of ids, each with its own group.
func hasNodes(m *adapterMember, ids []uint16) error {
	for _, id := range ids {
		if n, ok := m.fsm.node(id); !ok || n != (nodeRecord{ID: id, Addr: "127.0.0.1:1", Location: "default", Instance: "inst", Incarnation: 1}) {
			return fmt.Errorf("%s: node %d is %+v (known %v)", m.id, id, n, ok)
		}
		if g, ok := m.fsm.group(id); !ok || g.Main != id || g.Epoch != 1 {
			return fmt.Errorf("%s: group %d is %+v (known %v)", m.id, id, g, ok)
		}
	}
	return nil
}

// sameDirectory checks that m's directory equals want's, byte for byte as a snapshot.
func sameDirectory(t *testing.T, want, m *adapterMember) error {
	if a, b := snapshotBytes(t, want.fsm), snapshotBytes(t, m.fsm); string(a) != string(b) {
		return fmt.Errorf("%s's directory (index %d) differs from %s's (index %d)", m.id, m.fsm.index(), want.id, want.fsm.index())
	}
	return nil
}

// lastLeaderChange drains n's leader changes and returns the last one.
func lastLeaderChange(n consensus) (id string, seen bool) {
	for {
		select {
		case id = <-n.leaderChanges():
			seen = true
		default:
			return id, seen
		}
	}
}

// leaderEvent returns the pending leadership event of n, if any.
func leaderEvent(n consensus) (leader, seen bool) {
	select {
	case leader = <-n.leaderEvents():
		return leader, true
	default:
		return false, false
	}
}

func lastSnapshotIndex(t *testing.T, m *adapterMember) uint64 {
	t.Helper()
	idx, err := strconv.ParseUint(m.node.raft.Stats()["last_snapshot_index"], 10, 64)
	if err != nil {
		t.Fatalf("last snapshot index of %s: %v", m.id, err)
	}
	return idx
}

func TestRaftAdapterElectsAndReplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newAdapterCluster(t)
		lead := c.leader(electionWithin)

		wantMembers := []raftMember{{ID: "c1", Addr: "c1"}, {ID: "c2", Addr: "c2"}, {ID: "c3", Addr: "c3"}}
		term := lead.node.stats().Term
		for _, m := range c.members() {
			if !m.node.bootstrapped {
				t.Errorf("%s started on an empty directory without bootstrapping", m.id)
			}
			got, err := m.node.members()
			if err != nil || !reflect.DeepEqual(got, wantMembers) {
				t.Errorf("members on %s: %v %v, want %v", m.id, got, err, wantMembers)
			}
			wantState := "Follower"
			if m == lead {
				wantState = "Leader"
			}
			if st := m.node.stats(); st.State != wantState || st.Term != term || term == 0 {
				t.Errorf("stats of %s: %+v, want %s in term %d", m.id, st, wantState, term)
			}
			if id, seen := lastLeaderChange(m.node); id != lead.id {
				t.Errorf("leader changes on %s: last %q (any: %v), want %s", m.id, id, seen, lead.id)
			}
			if leader, seen := leaderEvent(m.node); seen != (m == lead) || leader != (m == lead) {
				t.Errorf("leader event on %s: %v (any: %v); leader is %s", m.id, leader, seen, lead.id)
			}
		}

		idx := propose(t, lead, join(1))
		waitFor(t, time.Second, "every member applied the join", func() error {
			for _, m := range c.members() {
				if got := m.fsm.index(); got != idx {
					return fmt.Errorf("%s applied up to %d, want %d", m.id, got, idx)
				}
				if err := hasNodes(m, []uint16{1}); err != nil {
					return err
				}
			}
			return nil
		})

		refusedAt, err := lead.node.propose(joinNode{ID: 2})
		var ref *refusal
		if !errors.As(err, &ref) || refusedAt <= idx {
			t.Fatalf("propose of an invalid join: index %d, %v; want a refusal after index %d", refusedAt, err, idx)
		}
		for _, f := range c.others(lead) {
			if _, err := f.node.propose(join(3)); !errors.Is(err, errNotLeader) {
				t.Errorf("propose on follower %s: %v, want errNotLeader", f.id, err)
			}
		}
		waitFor(t, time.Second, "every member applied the refused join, and only it", func() error {
			for _, m := range c.members() {
				if got := m.fsm.index(); got != refusedAt {
					return fmt.Errorf("%s applied up to %d, want %d", m.id, got, refusedAt)
				}
				if err := sameDirectory(t, lead, m); err != nil {
					return err
				}
			}
			return nil
		})
		for _, id := range []uint16{2, 3} {
			if _, ok := lead.fsm.node(id); ok {
				t.Errorf("node %d joined through a refused or misdirected proposal", id)
			}
		}
	})
}

func TestRaftAdapterVerifyLeaderAndBarrier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newAdapterCluster(t)
		lead := c.leader(electionWithin)
		if err := lead.node.verifyLeader(); err != nil {
			t.Fatalf("verifyLeader on leader %s: %v", lead.id, err)
		}

		// Commands in flight, not waited for: the barrier must wait until all are applied.
		var futs []raft.ApplyFuture
		for _, id := range nodeIDs(1, 5) {
			data, err := encodeCommand(join(id))
			if err != nil {
				t.Fatal(err)
			}
			futs = append(futs, lead.node.raft.Apply(data, 0))
		}
		if err := lead.node.barrier(); err != nil {
			t.Fatalf("barrier on leader %s: %v", lead.id, err)
		}
		if err := hasNodes(lead, nodeIDs(1, 5)); err != nil {
			t.Fatalf("after the barrier: %v", err)
		}
		if last := futs[len(futs)-1]; last.Error() != nil || lead.fsm.index() != last.Index() {
			t.Fatalf("after the barrier the leader applied up to %d; last command: index %d, %v", lead.fsm.index(), last.Index(), last.Error())
		}

		for _, f := range c.others(lead) {
			if err := f.node.verifyLeader(); !errors.Is(err, errNotLeader) {
				t.Errorf("verifyLeader on follower %s: %v, want errNotLeader", f.id, err)
			}
			if err := f.node.barrier(); !errors.Is(err, raft.ErrNotLeader) {
				t.Errorf("barrier on follower %s: %v, want raft.ErrNotLeader", f.id, err)
			}
		}
	})
}

func TestRaftAdapterFailover(t *testing.T) {
	for _, partition := range []bool{false, true} {
		name := "leader shut down"
		if partition {
			name = "leader partitioned"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testFailover(t, partition) })
		})
	}
}

// testFailover loses the leader, by shutdown or by a partition that isolates it, and
// checks that the others elect a new one that holds every committed command. A partitioned
// leader's proposal must fail and vanish once the partition heals.
func testFailover(t *testing.T, partition bool) {
	c := newAdapterCluster(t)
	old := c.leader(electionWithin)
	committed := nodeIDs(1, 5)
	for _, id := range committed {
		propose(t, old, join(id))
	}
	leaderEvent(old.node)
	survivors := c.others(old)

	orphan := make(chan error, 1)
	if partition {
		c.isolate(old.id)
		go func() {
			_, err := old.node.propose(join(100))
			orphan <- err
		}()
	} else {
		c.stop(old.id)
	}

	lost := time.Now()
	lead := leaderAmong(t, electionWithin, survivors)
	took := time.Since(lost)
	t.Logf("%s took over from %s after %v of raft time", lead.id, old.id, took)
	if leader, seen := leaderEvent(lead.node); !leader || !seen {
		t.Errorf("leader event on new leader %s: %v (any: %v)", lead.id, leader, seen)
	}
	if err := lead.node.barrier(); err != nil {
		t.Fatalf("barrier on new leader %s: %v", lead.id, err)
	}
	if err := hasNodes(lead, committed); err != nil {
		t.Fatalf("committed commands lost in the failover: %v", err)
	}
	propose(t, lead, join(6))

	if !partition {
		return
	}
	waitFor(t, electionWithin, "the old leader's proposal to fail", func() error {
		if len(orphan) == 0 {
			return errors.New("still pending")
		}
		return nil
	})
	if err := <-orphan; !errors.Is(err, errNotLeader) {
		t.Errorf("proposal on the partitioned old leader %s: %v, want errNotLeader", old.id, err)
	}
	if err := old.node.verifyLeader(); !errors.Is(err, errNotLeader) {
		t.Errorf("verifyLeader on the partitioned old leader %s: %v, want errNotLeader", old.id, err)
	}
	if leader, seen := leaderEvent(old.node); leader || !seen {
		t.Errorf("leader event on the partitioned old leader %s: %v (any: %v), want false", old.id, leader, seen)
	}

	c.heal(old.id)
	lead = c.leader(electionWithin)
	waitFor(t, electionWithin, "the old leader caught up", func() error {
		for _, m := range c.members() {
			if err := sameDirectory(t, lead, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err := hasNodes(old, append(committed, 6)); err != nil {
		t.Fatalf("old leader after healing: %v", err)
	}
	if _, ok := old.fsm.node(100); ok {
		t.Fatalf("the partitioned leader's proposal was applied")
	}
}

func TestRaftAdapterRestartCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newAdapterCluster(t)
		lead, f, _ := c.stopCaughtUpFollower()
		for _, id := range nodeIDs(4, 6) {
			propose(t, lead, join(id))
		}
		f = c.start(f.id)
		if f.node.bootstrapped {
			t.Fatalf("%s bootstrapped again on its existing raft state", f.id)
		}
		lead = c.leader(electionWithin)
		waitFor(t, electionWithin, "the restarted member caught up", func() error { return sameDirectory(t, lead, f) })
		if err := hasNodes(f, nodeIDs(1, 6)); err != nil {
			t.Fatalf("restarted member: %v", err)
		}
		if got, err := f.node.members(); err != nil || len(got) != 3 {
			t.Fatalf("members on restarted %s: %v %v", f.id, got, err)
		}
	})
}

func TestRaftAdapterSnapshotInstall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newAdapterCluster(t)
		lead, f, behind := c.stopCaughtUpFollower()

		// More than the threshold, and more than the leader keeps after a snapshot.
		ids := nodeIDs(4, 4+max(snapshotThreshold, trailingLogs)+100)
		proposeJoins(t, lead, ids)
		// raft checks the threshold every SnapshotInterval (2 to 4 minutes by default).
		waitFor(t, 5*time.Minute, "the leader snapshotted", func() error {
			if lastSnapshotIndex(t, lead) == 0 {
				return errors.New("no snapshot yet")
			}
			return nil
		})
		snap := lastSnapshotIndex(t, lead)
		if first, err := lead.node.store.FirstIndex(); err != nil || first <= behind+1 {
			t.Fatalf("leader's log starts at %d (%v); the stopped follower needs %d: not compacted", first, err, behind+1)
		}

		f = c.start(f.id)
		lead = c.leader(electionWithin)
		waitFor(t, time.Minute, "the restarted follower caught up", func() error { return sameDirectory(t, lead, f) })
		if got := lastSnapshotIndex(t, f); got != snap {
			t.Fatalf("restarted follower's last snapshot is at %d, want the leader's at %d", got, snap)
		}
		if err := hasNodes(f, ids); err != nil {
			t.Fatalf("restarted follower: %v", err)
		}

		idx := propose(t, lead, join(1))
		waitFor(t, time.Second, "the follower applies entries after the snapshot", func() error {
			if got := f.fsm.index(); got != idx {
				return fmt.Errorf("%s applied up to %d, want %d", f.id, got, idx)
			}
			return nil
		})
	})
}
