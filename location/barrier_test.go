package location

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 7's rule for a new main: chosen by a promotion, it must commit its barrier (which
// activates the promotion's config) within down-after, else it is treated as down.
func TestBarrierOverdue(t *testing.T) {
	chosen := func() command.GroupInfo {
		return command.GroupInfo{Server: 1, Epoch: 3, Main: 2,
			Active:    command.Config{Version: 4, Voters: []uint16{2, 3, 4}},
			Pending:   &command.Config{Version: 5, Voters: []uint16{3, 4}},
			Promotion: &command.Promotion{Epoch: 3, Phase: command.PromotionChosen, Chosen: 2, From: 1},
		}
	}
	report := func(epoch, activated uint64) reportSet {
		return reportSet{2: {1: {Server: 1, Role: command.RoleMain, Epoch: epoch, Activated: activated}}}
	}
	since := time.Unix(100, 0)
	const downAfter = time.Second
	late, early := since.Add(downAfter+time.Millisecond), since.Add(downAfter)
	activated := chosen()
	activated.Pending, activated.Promotion = nil, nil
	otherMain := chosen()
	otherMain.Main = 7 // a later change moved the main: not this attempt's business
	restarted := chosen()
	restarted.Epoch = 4 // the chosen main restarted (joinNode): it owes a barrier in epoch 4
	sealing := chosen()
	sealing.Promotion = &command.Promotion{Epoch: 4, Phase: command.PromotionSealing, From: 2}
	cases := []struct {
		name    string
		g       command.GroupInfo
		reports reportSet
		now     time.Time
		want    bool
	}{
		{name: "no report from the new main, past down-after", g: chosen(), reports: reportSet{}, now: late, want: true},
		{name: "reports as main, barrier not committed, past down-after", g: chosen(), reports: report(3, 4), now: late, want: true},
		{name: "within down-after", g: chosen(), reports: reportSet{}, now: early},
		{name: "barrier committed (the main reports the config activated)", g: chosen(), reports: report(3, 5), now: late},
		{name: "a report from an older epoch does not count", g: chosen(), reports: report(2, 5), now: late, want: true},
		{name: "config activated", g: activated, reports: reportSet{}, now: late},
		{name: "the chosen main restarted into a new epoch", g: restarted, reports: report(3, 5), now: late, want: true},
		{name: "the restarted main committed its barrier", g: restarted, reports: report(4, 5), now: late},
		{name: "main moved since", g: otherMain, reports: reportSet{}, now: late},
		{name: "another attempt is sealing", g: sealing, reports: reportSet{}, now: late},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := barrierOverdue(&tc.g, tc.reports, since, tc.now, downAfter); got != tc.want {
				t.Fatalf("barrierOverdue = %v, want %v", got, tc.want)
			}
		})
	}
}

// The clock of a chosen attempt starts when this term first sees it and restarts for a
// new attempt's epoch.
func TestChosenSince(t *testing.T) {
	p := newPromotions()
	t0 := time.Unix(100, 0)
	if got := p.chosenSince(1, 3, t0); !got.Equal(t0) {
		t.Fatalf("first look: %v", got)
	}
	if got := p.chosenSince(1, 3, t0.Add(time.Second)); !got.Equal(t0) {
		t.Fatalf("second look moved the clock to %v", got)
	}
	if got := p.chosenSince(1, 5, t0.Add(2*time.Second)); !got.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("a new attempt kept the old clock: %v", got)
	}
}

// Through the FSM: a chosen but never activated attempt does not block the next one, whose
// seals cover the active config and the attempt's pending one, and whose choice replaces
// the pending config; the replaced main becomes a learner.
func TestFSMRepromoteAfterBarrierTimeout(t *testing.T) {
	f, idx := threeVoters(t) // group 1: main 1, voters 2, 3, 4
	for _, c := range []dirCommand{
		beginPromotion{Server: 1, Epoch: 2, From: 1}, choosePromotion{Server: 1, Epoch: 2, Main: 2},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	g, _ := f.group(1)
	if !awaitingBarrier(&g, reportSet{}) {
		t.Fatalf("a fresh choice is not awaiting its barrier: %+v", g)
	}
	if sealsCover(&g, sealed(map[uint16][2]uint64{3: {1, 10}})) {
		t.Fatal("sealing 3 alone covered both the active {2,3,4} and the pending {3,4}")
	}
	for _, c := range []dirCommand{
		beginPromotion{Server: 1, Epoch: 3, From: 2}, choosePromotion{Server: 1, Epoch: 3, Main: 3},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s after the first attempt's barrier timed out: %v", c.kind(), err)
		}
		idx++
	}
	g, _ = f.group(1)
	if g.Main != 3 || g.Epoch != 3 || g.Pending == nil || len(g.Pending.Voters) != 1 || g.Pending.Voters[0] != 4 {
		t.Fatalf("group after the second attempt: %+v pending %+v", g, g.Pending)
	}
	if m := member(&g, 2); m == nil || m.State != command.SiblingSyncing {
		t.Fatalf("the replaced main 2 is %+v, want a learner", m)
	}
}

// Case 7 (rule "A new main whose barrier has not committed within down-after counts as
// down"), with real raft: group 1's main goes silent and the controller chooses a new one,
// which heartbeats as main but never commits its barrier (it reaches none of its new
// config). Although it is alive, the controller starts a fresh attempt and another node
// becomes main in a higher epoch; once a chosen main can commit, the group settles.
func TestCase7C_NewMainWhoseBarrierDoesNotCommitIsReplaced(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.leader(10 * time.Second)
	var nodes []*sealingNode
	stops := map[uint16]chan struct{}{}
	var beating sync.WaitGroup
	for i := uint16(1); i <= 4; i++ {
		n := newSealingNode(t, i, tc.httpAddrs())
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
		stops[i] = make(chan struct{})
		beating.Add(1)
		go n.run(stops[i], &beating)
	}
	stopped := map[uint16]bool{}
	stopNode := func(id uint16) {
		if !stopped[id] {
			stopped[id] = true
			close(stops[id])
		}
	}
	t.Cleanup(func() {
		for id := range stops {
			stopNode(id)
		}
		beating.Wait()
	})
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if !converged(d, 4) {
			return fmt.Errorf("not converged")
		}
		return nil
	})
	d, err := tc.directory()
	if err != nil {
		t.Fatal(err)
	}
	old := d.Group(1).Main
	setNoBarrier := func(on bool) {
		for _, n := range nodes {
			n.fakeNode.mu.Lock()
			n.fakeNode.noBarrier = on
			n.fakeNode.mu.Unlock()
		}
	}
	setNoBarrier(true)
	stopNode(old)

	var first command.GroupInfo
	eventuallyOK(t, 20*time.Second, "a new main chosen for group 1", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if g := d.Group(1); g.Main != 0 && g.Main != old {
			first = *g
			return nil
		}
		return fmt.Errorf("group 1: main %d epoch %d", d.Group(1).Main, d.Group(1).Epoch)
	})
	t.Logf("chosen: node %d in epoch %d; it never commits its barrier", first.Main, first.Epoch)
	chosenAt := time.Now()
	var second command.GroupInfo
	eventuallyOK(t, 20*time.Second, "another main in a later epoch", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if g := d.Group(1); g.Main != 0 && g.Main != old && g.Main != first.Main && g.Epoch > first.Epoch {
			second = *g
			return nil
		}
		return fmt.Errorf("group 1: main %d epoch %d", d.Group(1).Main, d.Group(1).Epoch)
	})
	took := time.Since(chosenAt)
	t.Logf("replaced by node %d in epoch %d after %v (down-after %v)", second.Main, second.Epoch, took.Round(time.Millisecond), testDownAfter)
	if took < testDownAfter/2 {
		t.Fatalf("the chosen main was replaced after %v, before down-after %v could pass", took, testDownAfter)
	}
	if stopped[first.Main] {
		t.Fatalf("node %d was stopped; the point is that a live main is replaced", first.Main)
	}

	// A main that commits its barrier stays.
	setNoBarrier(false)
	eventuallyOK(t, 30*time.Second, "group 1 settled with its main's config active", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if g := d.Group(1); g.Main == 0 || g.Main == old || g.Pending != nil {
			return fmt.Errorf("group 1: main %d epoch %d pending %+v", g.Main, g.Epoch, g.Pending)
		}
		return nil
	})
}

// decidePromotion passes over a main whose barrier was overdue only while the other seals
// cover R voters of every config in use; otherwise leaving it out could lose an entry
// only it and the unsealed voters hold.
func TestDecidePromotionPassesOverAnOverdueMain(t *testing.T) {
	// Main 2 was chosen at epoch 2 (its barrier (2, 101) is its last entry); the active
	// config {2,3,4} is still in use with the promotion's pending {3,4}.
	g := command.GroupInfo{Server: 1, Epoch: 2, Main: 2, Active: command.Config{Version: 5, Voters: []uint16{2, 3, 4}},
		Pending:   &command.Config{Version: 6, Voters: []uint16{3, 4}},
		Promotion: &command.Promotion{Epoch: 2, Phase: command.PromotionChosen, Chosen: 2, From: 1}}
	stuck := command.SealReply{Node: 2, LastEpoch: 2, LastSeq: 101}
	for _, tc := range []struct {
		name    string
		replies []command.SealReply
		want    uint16
	}{
		{"the others cover both configs", []command.SealReply{stuck, {Node: 3, LastEpoch: 1, LastSeq: 100}, {Node: 4, LastEpoch: 1, LastSeq: 99}}, 3},
		{"without it the active config lacks R", []command.SealReply{stuck, {Node: 4, LastEpoch: 1, LastSeq: 100}}, 2},
	} {
		replies := map[uint16]command.SealReply{}
		for _, r := range tc.replies {
			replies[r.Node] = r
		}
		cmd, chosen := decidePromotion(&g, 3, replies, true, 2, nil)
		if c, ok := cmd.(choosePromotion); !ok || c.Main != tc.want || chosen.Node != tc.want {
			t.Fatalf("%s: %+v (chosen %d), want node %d chosen", tc.name, cmd, chosen.Node, tc.want)
		}
		if _, chosen := decidePromotion(&g, 3, replies, true, 0, nil); chosen.Node != 2 {
			t.Fatalf("%s: without passing over, chose %d; want 2, the highest last entry", tc.name, chosen.Node)
		}
	}
}
