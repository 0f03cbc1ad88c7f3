package location

import (
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// The FSM side of promotion (docs/replication.md case 5): every step is committed before it
// acts. The attempt's epoch is committed before any seal is sent; the choice (epoch, main,
// new config) before anyone is told. An attempt that is not chosen is abandoned, and its
// epoch stays consumed.

const (
	kindBeginPromotion   = "beginPromotion"
	kindChoosePromotion  = "choosePromotion"
	kindAbandonPromotion = "abandonPromotion"
	kindRefreshMain      = "refreshMain"
)

// beginPromotion opens an attempt to replace main From of group Server in epoch Epoch.
type beginPromotion struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	From   uint16 `json:"from"`
	// Reason and SuspectedMs are carried into the group's Promotion record and, once the
	// promotion completes, into the history (promotion_history.go).
	Reason      string `json:"reason,omitempty"`
	SuspectedMs int64  `json:"suspectedMs,omitempty"`
}

// choosePromotion makes Main the main of group Server in the attempt's epoch. The new
// config is the newest one without Main; it stays pending (the new main writes under the
// joint quorum of it and the active config) until the main's barrier commits under it. The
// replaced main is kept as a syncing learner: when it returns it catches up from its
// divergence point and votes again only through a later config change.
type choosePromotion struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	Main   uint16 `json:"main"`
	// Planned: a hand-over (admin promote). The old main holds everything and joins the new
	// config as a voter rather than as a learner.
	Planned bool `json:"planned,omitempty"`
	// CopyID is the copy the chosen sibling sealed with. It becomes MainCopyID when the
	// directory recorded none for the sibling, so that a later copy of that node (its disk
	// lost) is never counted as the one that was main.
	CopyID string `json:"copyId,omitempty"`
}

// abandonPromotion gives up attempt Epoch of group Server (a new leader, too few seals).
type abandonPromotion struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	// Refresh: the main the attempt would have replaced is alive. Siblings it sealed now
	// refuse that main's epoch, so the main gets a fresh epoch (above the attempt's) and
	// goes on: it holds every committed entry, since it counts itself in every commit.
	Refresh bool `json:"refresh,omitempty"`
}

func (beginPromotion) kind() string   { return kindBeginPromotion }
func (choosePromotion) kind() string  { return kindChoosePromotion }
func (abandonPromotion) kind() string { return kindAbandonPromotion }
func (refreshMain) kind() string      { return kindRefreshMain }

// refreshMain gives main Main of group Server, in epoch Epoch, the group's next epoch while
// no attempt is open (mainStranded): siblings that an abandoned attempt sealed refuse its
// epoch, and no new attempt can replace it. As with abandonPromotion's Refresh, the main
// holds every committed entry (it counts itself in every commit), so it goes on in an epoch
// above the abandoned attempt's. Refused when the group has moved on meanwhile, and for a
// main that only a rehome's record names.
type refreshMain struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	Main   uint16 `json:"main"`
}

func (c refreshMain) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("refreshMain of group %d: no such group", c.Server)
	}
	if g.Main == 0 || g.Main != c.Main || g.Epoch != c.Epoch {
		return refuse("refreshMain of group %d: main %d in epoch %d, not main %d in epoch %d", c.Server, g.Main, g.Epoch, c.Main, c.Epoch)
	}
	if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
		return refuse("refreshMain of group %d: attempt %d is open", c.Server, g.Promotion.Epoch)
	}
	if rehomedWithoutMain(g) {
		// Named by a rehome's record only: it may miss writes a later main of the old home
		// acked (docs/locations.md "Moving a home", rule 5).
		return refuse("refreshMain of group %d: main %d is named only by the record home %q took over from %q",
			c.Server, g.Main, g.Home, g.RehomedFrom)
	}
	g.Epoch = g.NextEpoch()
	return nil
}

func (c beginPromotion) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("beginPromotion of group %d: no such group", c.Server)
	}
	if c.Epoch != g.NextEpoch() {
		return refuse("beginPromotion of group %d: epoch %d, the next is %d", c.Server, c.Epoch, g.NextEpoch())
	}
	if g.Main != c.From {
		return refuse("beginPromotion of group %d: main is %d, not %d", c.Server, g.Main, c.From)
	}
	if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
		return refuse("beginPromotion of group %d: attempt %d is still open", c.Server, g.Promotion.Epoch)
	}
	if len(g.Active.Voters) == 0 {
		// A config with no siblings cannot be sealed: its main alone holds the writes.
		return refuse("beginPromotion of group %d: the active config has no voting sibling", c.Server)
	}
	g.Promotion = &command.Promotion{Epoch: c.Epoch, Phase: command.PromotionSealing, From: c.From,
		Reason: c.Reason, SuspectedMs: c.SuspectedMs}
	return nil
}

func (c choosePromotion) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("choosePromotion of group %d: no such group", c.Server)
	}
	p := g.Promotion
	if p == nil || p.Epoch != c.Epoch || p.Phase != command.PromotionSealing {
		return refuse("choosePromotion of group %d: attempt %d is not open", c.Server, c.Epoch)
	}
	if c.Epoch <= g.Epoch {
		// Another main holds this epoch or a later one already; the attempt is stale.
		return refuse("choosePromotion of group %d: epoch %d is not above the group's epoch %d", c.Server, c.Epoch, g.Epoch)
	}
	if !slices.Contains(g.Voters(), c.Main) {
		return refuse("choosePromotion of group %d: node %d is not a voting sibling", c.Server, c.Main)
	}
	newest := g.Active
	if g.Pending != nil {
		newest = *g.Pending
	}
	voters := slices.DeleteFunc(slices.Clone(newest.Voters), func(n uint16) bool { return n == c.Main })
	if c.Planned && g.Main != 0 && !slices.Contains(voters, g.Main) {
		voters = append(voters, g.Main)
		slices.Sort(voters)
	}
	version := g.Active.Version
	if g.Pending != nil && g.Pending.Version > version {
		version = g.Pending.Version
	}
	g.Pending = &command.Config{Version: version + 1, Voters: voters}
	chosenCopy := ""
	if m := member(g, c.Main); m != nil {
		chosenCopy = m.CopyID
	}
	if chosenCopy != "" && c.CopyID != "" && chosenCopy != c.CopyID {
		// The node sealed with another copy than the one the directory now records: its
		// disk was lost after it sealed, and what it holds now is not what it reported.
		return refuse("choosePromotion of group %d: node %d sealed copy %q, but its copy is recorded as %q", c.Server, c.Main, c.CopyID, chosenCopy)
	}
	if chosenCopy == "" {
		chosenCopy = c.CopyID
	}
	g.Siblings = slices.DeleteFunc(g.Siblings, func(m command.Member) bool { return m.Node == c.Main })
	if old := g.Main; old != 0 && old != c.Main && siblingIndex(g, old) < 0 {
		g.Siblings = append(g.Siblings, command.Member{Node: old, State: command.SiblingSyncing, CopyID: g.MainCopyID})
	}
	g.Epoch, g.Main, g.MainCopyID = c.Epoch, c.Main, chosenCopy
	p.Phase, p.Chosen = command.PromotionChosen, c.Main
	return nil
}

func (c abandonPromotion) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("abandonPromotion of group %d: no such group", c.Server)
	}
	if g.Promotion == nil || g.Promotion.Epoch != c.Epoch || g.Promotion.Phase != command.PromotionSealing {
		return refuse("abandonPromotion of group %d: attempt %d is not open", c.Server, c.Epoch)
	}
	g.Promotion.Phase = command.PromotionAbandoned
	if c.Refresh && g.Main != 0 && g.Main == g.Promotion.From {
		g.Epoch = g.NextEpoch()
	}
	return nil
}
