package location

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/sibylhq/sibyl/command"
)

// applyAt applies cmd at raft index idx and returns the FSM's result.
func applyAt(t *testing.T, f *fsm, idx uint64, cmd dirCommand) error {
	t.Helper()
	data, err := encodeCommand(cmd)
	if err != nil {
		t.Fatalf("encode %T: %v", cmd, err)
	}
	res, ok := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(applyResult)
	if !ok {
		t.Fatalf("Apply(%T) returned no applyResult", cmd)
	}
	if res.Index != idx {
		t.Fatalf("Apply(%T) result index %d, want %d", cmd, res.Index, idx)
	}
	return res.Err
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	st, _ := f.view()
	b, err := json.Marshal(st.snapshotFile())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func join(id uint16) joinNode {
	return joinNode{ID: id, Addr: "127.0.0.1:1", Location: "default", Instance: "inst", Incarnation: 1}
}

// buildFSM applies a realistic sequence: a controller, three nodes, group 1 growing to two
// voters, and returns the FSM and the next free index.
func buildFSM(t *testing.T) (*fsm, uint64) {
	t.Helper()
	f := newFSM()
	cmds := []dirCommand{
		registerController{Controller: controllerRecord{ID: "c1", HTTPAddr: "h1", RaftAddr: "r1", Location: "default"}},
		join(1), join(2), join(3),
		addLearner{Server: 1, Node: 2},
		addLearner{Server: 1, Node: 3},
		proposeVoter{Server: 1, Node: 2},
		activate{Server: 1, Version: 2, CopyIDs: []copyID{{Node: 2, CopyID: "copy-2"}}},
		proposeVoter{Server: 1, Node: 3},
	}
	idx := uint64(1)
	for _, c := range cmds {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s at %d: %v", c.kind(), idx, err)
		}
		idx++
	}
	return f, idx
}

func TestFSMApplySequence(t *testing.T) {
	f, idx := buildFSM(t)
	st, _ := f.view()
	if st.Index != idx-1 {
		t.Fatalf("index %d, want %d", st.Index, idx-1)
	}
	if len(st.Nodes) != 3 || len(st.Groups) != 3 {
		t.Fatalf("nodes %d groups %d, want 3 and 3", len(st.Nodes), len(st.Groups))
	}
	g3 := st.Groups[3]
	want3 := command.GroupInfo{Server: 3, Epoch: 1, Main: 3, Siblings: []command.Member{}, Active: command.Config{Version: 1, Voters: []uint16{}}}
	if !reflect.DeepEqual(*g3, want3) {
		t.Fatalf("group 3 = %+v, want %+v", *g3, want3)
	}
	g1 := st.Groups[1]
	wantSibs := []command.Member{{Node: 2, State: command.SiblingVoting, CopyID: "copy-2"}, {Node: 3, State: command.SiblingSyncing}}
	if !reflect.DeepEqual(g1.Siblings, wantSibs) {
		t.Fatalf("group 1 siblings %+v, want %+v", g1.Siblings, wantSibs)
	}
	if !reflect.DeepEqual(g1.Active, command.Config{Version: 2, Voters: []uint16{2}}) {
		t.Fatalf("group 1 active %+v", g1.Active)
	}
	if g1.Pending == nil || !reflect.DeepEqual(*g1.Pending, command.Config{Version: 3, Voters: []uint16{2, 3}}) {
		t.Fatalf("group 1 pending %+v, want version 3 voters [2 3]", g1.Pending)
	}

	// Activating version 3 makes node 3 voting; a copy ID missing from the command stays empty.
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	g, _ := f.group(1)
	if g.Pending != nil || g.Active.Version != 3 || !slices.Equal(g.Active.Voters, []uint16{2, 3}) {
		t.Fatalf("after activate 3: %+v", g)
	}
	if g.Siblings[1] != (command.Member{Node: 3, State: command.SiblingVoting}) {
		t.Fatalf("node 3 member %+v", g.Siblings[1])
	}
	if c := f.commandCounts()[[2]string{kindActivate, "ok"}]; c != 2 {
		t.Fatalf("activate ok count %d, want 2", c)
	}
}

func TestFSMRefusals(t *testing.T) {
	cases := []struct {
		name string
		cmd  dirCommand
	}{
		{"controller without address", registerController{Controller: controllerRecord{ID: "c2"}}},
		{"join id 0", joinNode{Addr: "a", Location: "default", Instance: "i"}},
		{"join without instance", joinNode{ID: 9, Addr: "a", Location: "default"}},
		{"learner in unknown group", addLearner{Server: 7, Node: 2}},
		{"unknown learner", addLearner{Server: 2, Node: 7}},
		{"main as learner", addLearner{Server: 2, Node: 2}},
		{"learner twice", addLearner{Server: 1, Node: 3}},
		{"propose while pending", proposeVoter{Server: 1, Node: 3}},
		{"propose non-sibling", proposeVoter{Server: 2, Node: 3}},
		{"propose in unknown group", proposeVoter{Server: 8, Node: 3}},
		{"activate wrong version", activate{Server: 1, Version: 2}},
		{"activate without pending", activate{Server: 2, Version: 2}},
		{"activate unknown group", activate{Server: 9, Version: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, idx := buildFSM(t)
			before := snapshotBytes(t, f)
			err := applyAt(t, f, idx, tc.cmd)
			var ref *refusal
			if !errors.As(err, &ref) {
				t.Fatalf("apply %+v: got %v, want a refusal", tc.cmd, err)
			}
			st, _ := f.view()
			if st.Index != idx {
				t.Fatalf("refused command did not move the index to %d (at %d)", idx, st.Index)
			}
			st.Index = idx - 1 // compare everything else
			after, _ := json.Marshal(st.snapshotFile())
			if !bytes.Equal(before, after) {
				t.Fatalf("refused %s changed the directory:\nbefore %s\nafter  %s", tc.cmd.kind(), before, after)
			}
		})
	}
}

func TestFSMProposeVotingSiblingRefused(t *testing.T) {
	f, idx := buildFSM(t)
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx+1, proposeVoter{Server: 1, Node: 2}); err == nil {
		t.Fatal("proposing a voting sibling again was accepted")
	}
}

func TestFSMRejoinKeepsGroup(t *testing.T) {
	f, idx := buildFSM(t)
	before, _ := f.group(1)
	rejoin := joinNode{ID: 1, Addr: "127.0.0.1:2", Location: "default", Instance: "new", Incarnation: 2}
	if err := applyAt(t, f, idx, rejoin); err != nil {
		t.Fatal(err)
	}
	n, _ := f.node(1)
	if n.Addr != "127.0.0.1:2" || n.Instance != "new" || n.Incarnation != 2 {
		t.Fatalf("node 1 after rejoin: %+v", n)
	}
	after, _ := f.group(1)
	// A restarted main never continues in its old epoch: only the epoch moves.
	want := before
	want.Epoch++
	if !reflect.DeepEqual(want, after) {
		t.Fatalf("rejoin of main 1 changed group 1: %+v -> %+v, want only the epoch raised", before, after)
	}
	// The same join again (a retried request) is accepted and changes nothing.
	if err := applyAt(t, f, idx+1, rejoin); err != nil {
		t.Fatalf("repeated join refused: %v", err)
	}
	again, _ := f.group(1)
	if again.Epoch != after.Epoch {
		t.Fatalf("a repeated join raised the epoch again: %d -> %d", after.Epoch, again.Epoch)
	}
}

func TestFSMUndecodableEntry(t *testing.T) {
	f := newFSM()
	for i, data := range [][]byte{nil, []byte("{"), []byte(`{"kind":"nope","body":{}}`), []byte(`{"kind":"joinNode","body":[]}`)} {
		res := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}).(applyResult)
		if res.Err == nil {
			t.Fatalf("entry %q applied without error", data)
		}
	}
	if f.index() != 4 || len(f.st.Nodes) != 0 {
		t.Fatalf("index %d nodes %d after garbage", f.index(), len(f.st.Nodes))
	}
}

func TestCommandEncodingRoundTrip(t *testing.T) {
	cmds := []dirCommand{
		registerController{Controller: controllerRecord{ID: "c1", HTTPAddr: "h", RaftAddr: "r", Location: "l"}},
		join(4), addLearner{Server: 1, Node: 2}, proposeVoter{Server: 1, Node: 2},
		activate{Server: 1, Version: 2, CopyIDs: []copyID{{Node: 2, CopyID: "x"}}},
		demote{Server: 1, Nodes: []uint16{2, 3}, To: command.SiblingStale}, reviveStale{Server: 1, Node: 2},
	}
	for _, c := range cmds {
		data, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCommand(data)
		if err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %s: got %+v, want %+v", data, got, c)
		}
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f, _ := buildFSM(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v (closed %v)", err, sink.closed)
	}
	snap.Release()

	g := newFSM()
	woken := g.changed
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	default:
		t.Fatal("restore did not wake waiters")
	}
	want, _ := f.view()
	got, _ := g.view()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored directory differs:\n got %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("restored directory serialises differently")
	}
	// The restored FSM goes on applying exactly like the original.
	idx := want.Index + 1
	if err := applyAt(t, g, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("original and restored FSMs diverged after the same command")
	}
}

func TestFSMRestoreRejectsBadSnapshot(t *testing.T) {
	for _, data := range []string{"", "{", `{"format":99}`, `{"format":1,"groups":[{"server":1},{"server":1}]}`} {
		f, _ := buildFSM(t)
		before := snapshotBytes(t, f)
		if err := f.Restore(io.NopCloser(bytes.NewReader([]byte(data)))); err == nil {
			t.Fatalf("restore of %q succeeded", data)
		}
		if !bytes.Equal(before, snapshotBytes(t, f)) {
			t.Fatalf("failed restore of %q changed the directory", data)
		}
	}
}

// removeNode refuses a node that is not spare or still holds a copy, so a stale admin
// decision can never drop a node the directory still needs; a spare, empty node goes.
func TestRemoveNodeRefusesANodeInUse(t *testing.T) {
	s := newDirState()
	s.Nodes[1] = nodeRecord{ID: 1, Addr: "a", Location: "l", Instance: "i1"}
	s.Nodes[2] = nodeRecord{ID: 2, Addr: "b", Location: "l", Instance: "i2"}
	s.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 1, Main: 1, Siblings: []command.Member{{Node: 2, State: command.SiblingVoting}},
		Active: command.Config{Version: 1, Voters: []uint16{2}}}
	if err := (removeNode{Node: 2}).applyTo(s); err == nil {
		t.Fatal("removed node 2, which is not spare")
	}
	n := s.Nodes[2]
	n.Spare = true
	s.Nodes[2] = n
	if err := (removeNode{Node: 2}).applyTo(s); err == nil || !strings.Contains(err.Error(), "holds copies") {
		t.Fatalf("removed node 2, a sibling of group 1: %v", err)
	}
	s.Groups[1].Siblings, s.Groups[1].Active.Voters = nil, nil
	if err := (removeNode{Node: 2}).applyTo(s); err != nil {
		t.Fatalf("remove a spare node with no copy: %v", err)
	}
	if _, ok := s.Nodes[2]; ok {
		t.Fatal("node 2 is still in the directory")
	}
	if err := (removeNode{Node: 2}).applyTo(s); err == nil {
		t.Fatal("removed node 2 twice")
	}
}

// A node that comes back without its disk (its incarnation did not advance) cannot vouch for
// a voting copy whose ID was never recorded: the membership gets an ID no copy has, so the
// node's seals are not counted from the new copy (docs/replication.md case 5D).
func TestWipedNodeLosesAnUnrecordedVotingCopy(t *testing.T) {
	s := newDirState()
	s.Nodes[4] = nodeRecord{ID: 4, Addr: "a", Location: "l", Instance: "n4-1", Incarnation: 2}
	s.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 3, Main: 1,
		Siblings: []command.Member{{Node: 4, State: command.SiblingVoting}, {Node: 2, State: command.SiblingVoting, CopyID: "c2"}},
		Active:   command.Config{Version: 5, Voters: []uint16{2, 4}}}
	restart := joinNode{ID: 4, Addr: "a", Location: "l", Instance: "n4-2", Incarnation: 3}
	if err := restart.applyTo(s); err != nil {
		t.Fatal(err)
	}
	if id := s.Groups[1].Siblings[0].CopyID; id != "" {
		t.Fatalf("a restart with its disk marked the copy %q", id)
	}
	wiped := joinNode{ID: 4, Addr: "a", Location: "l", Instance: "n4-3", Incarnation: 1}
	if err := wiped.applyTo(s); err != nil {
		t.Fatal(err)
	}
	g := s.Groups[1]
	if id := g.Siblings[0].CopyID; id == "" {
		t.Fatal("the wiped node's voting copy still has no recorded ID: its new copy's seals would count")
	}
	if sameCopy(g, command.SealReply{Node: 4, CopyID: "c4.2"}) {
		t.Fatal("a seal from the wiped node's new copy counts")
	}
	if g.Siblings[1].CopyID != "c2" {
		t.Fatalf("another node's copy ID changed to %q", g.Siblings[1].CopyID)
	}
}

// A main whose voting copy was never recorded and that comes back without its disk is in
// the same place: its new copy joins as a learner under an ID no copy has, so its seals do
// not stand in for the voter that held the committed entries (simulation seed 327631155446:
// the seal of the wiped main's new, empty copy covered the active config and a sibling
// missing a committed entry was chosen).
func TestWipedMainLosesAnUnrecordedCopy(t *testing.T) {
	s := newDirState()
	s.Nodes[4] = nodeRecord{ID: 4, Addr: "a", Location: "l", Instance: "n4-1", Incarnation: 2}
	s.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 3, Main: 4,
		Siblings: []command.Member{{Node: 3, State: command.SiblingVoting, CopyID: "c3"}},
		Active:   command.Config{Version: 5, Voters: []uint16{3, 4}}}
	wiped := joinNode{ID: 4, Addr: "a", Location: "l", Instance: "n4-2", Incarnation: 1}
	if err := wiped.applyTo(s); err != nil {
		t.Fatal(err)
	}
	g := s.Groups[1]
	if g.Main != 0 {
		t.Fatalf("the wiped main is still main of group 1 (main %d)", g.Main)
	}
	if sameCopy(g, command.SealReply{Node: 4, CopyID: "c4.2"}) {
		t.Fatal("a seal from the wiped main's new copy counts")
	}
}

// A node of loc2 is main of group 1, homed in loc1, and comes back on a wiped data
// directory. Its own location answers its join with the recorded incarnation + 1, which it
// adopts; its guest join at the home carries that incarnation, above the home's record, so
// the home took it for a restart and kept the node as main of a fresh epoch with an empty
// copy (seed 76 of TestSimulationLocations when it was found; the node's core then refused to serve,
// and the group waited for the home to notice). The join says it adopted one (Wiped): the
// home clears the main and marks its unrecorded voting copies as lost, as for a wiped
// return at its own location.
func TestWipedGuestMainLosesItsRoleAtItsHome(t *testing.T) {
	own, home := newDirState(), newDirState()
	for _, s := range []*dirState{own, home} {
		s.Nodes[2] = nodeRecord{ID: 2, Addr: "a", Location: "loc2", Instance: "n2-1", Incarnation: 2}
	}
	home.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 3, Main: 2, MainCopyID: "c2.1",
		Siblings: []command.Member{{Node: 3, State: command.SiblingVoting, CopyID: "c3"}},
		Active:   command.Config{Version: 5, Voters: []uint16{3}}}
	// Node 2 also holds a voting copy of group 5 whose ID was never recorded.
	home.Groups[5] = &command.GroupInfo{Server: 5, Epoch: 1, Main: 5,
		Siblings: []command.Member{{Node: 2, State: command.SiblingVoting}},
		Active:   command.Config{Version: 2, Voters: []uint16{2}}}
	// The new process starts its counter again at 1; its own location records 3.
	if err := (joinNode{ID: 2, Addr: "a", Location: "loc2", Instance: "n2-2", Incarnation: 1}).applyTo(own); err != nil {
		t.Fatal(err)
	}
	adopted := own.Nodes[2].Incarnation
	if adopted != 3 {
		t.Fatalf("own location recorded incarnation %d for the wiped return, want 3", adopted)
	}
	join := joinNode{ID: 2, Addr: "a", Location: "loc2", Instance: "n2-2", Incarnation: adopted, Guest: true, Wiped: true}
	if err := join.applyTo(home); err != nil {
		t.Fatal(err)
	}
	g := home.Groups[1]
	if g.Main != 0 {
		t.Fatalf("the home kept the wiped node 2 as main (epoch %d, main %d)", g.Epoch, g.Main)
	}
	if id := home.Groups[5].Siblings[0].CopyID; id == "" {
		t.Fatal("node 2's unrecorded voting copy of group 5 is still unmarked: its new copy's seals would count")
	}
	if home.Nodes[2].Incarnation != adopted {
		t.Fatalf("home recorded incarnation %d, want the adopted %d", home.Nodes[2].Incarnation, adopted)
	}
	// The same join without the flag is a restart: the main stays, with a fresh epoch.
	restart := newDirState()
	restart.Nodes[2] = nodeRecord{ID: 2, Addr: "a", Location: "loc2", Instance: "n2-1", Incarnation: 2}
	restart.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 3, Main: 2, MainCopyID: "c2.1", Siblings: []command.Member{},
		Active: command.Config{Version: 5, Voters: []uint16{3}}}
	join.Wiped = false
	if err := join.applyTo(restart); err != nil {
		t.Fatal(err)
	}
	if g := restart.Groups[1]; g.Main != 2 || g.Epoch != 4 {
		t.Fatalf("a restarted main: main %d epoch %d, want main 2 in a fresh epoch 4", g.Main, g.Epoch)
	}
}

// A promotion records the copy the chosen sibling sealed with when the directory had none
// for it, so a wiped return of that main later is recognised as another copy.
func TestChosenMainKeepsItsSealedCopy(t *testing.T) {
	s := newDirState()
	s.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 2, Main: 2,
		Siblings:  []command.Member{{Node: 3, State: command.SiblingVoting, CopyID: "c3"}, {Node: 4, State: command.SiblingVoting}},
		Active:    command.Config{Version: 5, Voters: []uint16{3, 4}},
		Promotion: &command.Promotion{Epoch: 3, Phase: command.PromotionSealing, From: 2}}
	if err := (choosePromotion{Server: 1, Epoch: 3, Main: 4, CopyID: "c4.1"}).applyTo(s); err != nil {
		t.Fatal(err)
	}
	if got := s.Groups[1].MainCopyID; got != "c4.1" {
		t.Fatalf("MainCopyID %q after choosing node 4 sealed as c4.1", got)
	}
}

// A learner named in a pending config seals an open attempt, then comes back with an
// empty disk before the attempt decides: its seal reported a copy it no longer holds, so
// the attempt may not make it main (simulation seed 4323 chose it, and its new main's
// barrier truncated committed entries at a sibling).
func TestWipedPendingVoterIsNotChosenFromItsOldSeal(t *testing.T) {
	s := newDirState()
	s.Nodes[4] = nodeRecord{ID: 4, Addr: "a", Location: "l", Instance: "n4-2", Incarnation: 2}
	s.Groups[1] = &command.GroupInfo{Server: 1, Epoch: 2, Main: 3,
		Siblings:  []command.Member{{Node: 2, State: command.SiblingVoting, CopyID: "c2.1"}, {Node: 4, State: command.SiblingSyncing}},
		Active:    command.Config{Version: 3, Voters: []uint16{2, 3}},
		Pending:   &command.Config{Version: 5, Voters: []uint16{2, 4}},
		Promotion: &command.Promotion{Epoch: 3, Phase: command.PromotionSealing, From: 3}}
	sealed := command.SealReply{Node: 4, Epoch: 3, LastEpoch: 1, LastSeq: 20, CopyID: "c4.1"}
	if !sameCopy(s.Groups[1], sealed) {
		t.Fatal("before the wipe, node 4's seal does not count")
	}
	wiped := joinNode{ID: 4, Addr: "a", Location: "l", Instance: "n4-3", Incarnation: 1}
	if err := wiped.applyTo(s); err != nil {
		t.Fatal(err)
	}
	if sameCopy(s.Groups[1], sealed) {
		t.Fatal("after the wipe, node 4's seal from its old copy still counts")
	}
	err := (choosePromotion{Server: 1, Epoch: 3, Main: 4, CopyID: "c4.1"}).applyTo(s)
	if err == nil || s.Groups[1].Main == 4 {
		t.Fatalf("choosePromotion of the wiped node from its old seal: %v, main %d; want refused", err, s.Groups[1].Main)
	}
}
