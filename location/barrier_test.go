package location

import (
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
