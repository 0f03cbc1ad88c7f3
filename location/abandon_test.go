package location

import (
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// An attempt that cannot cover its configs is abandoned. If the main it meant to replace
// still serves, the abandon gives that main the next epoch, above the attempt's (the
// siblings it sealed refuse the old one); if not, the group waits for the next attempt.
func TestAbandonedAttemptRefreshesALiveMain(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mainUp    bool
		wantEpoch uint64
	}{
		{"main serving", true, 3},
		{"main gone", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, idx := threeVoters(t)
			g, _ := f.group(1)
			if g.Epoch != 1 || g.Main != 1 {
				t.Fatalf("setup: epoch %d main %d", g.Epoch, g.Main)
			}
			fsmStep(t, f, &idx, beginPromotion{Server: 1, Epoch: 2, From: 1})
			g, _ = f.group(1)
			// Only one voter sealed: R = 2 of {2,3,4} is not covered.
			cmd, _ := decidePromotion(&g, 2, map[uint16]command.SealReply{2: {Node: 2, LastEpoch: 1, LastSeq: 9, CopyID: member(&g, 2).CopyID}}, tc.mainUp, 0, nil)
			ab, ok := cmd.(abandonPromotion)
			if !ok || ab.Refresh != tc.mainUp {
				t.Fatalf("decision %+v, want an abandon with refresh=%t", cmd, tc.mainUp)
			}
			fsmStep(t, f, &idx, ab)
			g, _ = f.group(1)
			if g.Epoch != tc.wantEpoch || g.Main != 1 || g.Promotion.Phase != command.PromotionAbandoned {
				t.Fatalf("after the abandon: epoch %d main %d promotion %+v; want epoch %d, main 1, abandoned",
					g.Epoch, g.Main, g.Promotion, tc.wantEpoch)
			}
			if next := g.NextEpoch(); next <= 2 {
				t.Fatalf("next epoch %d: the abandoned epoch 2 would be reused", next)
			}
		})
	}
}
