package location

import (
	"github.com/sibylhq/sibyl/command"
)

// The FSM side of moving a group's home (docs/locations.md "Moving a home"). The taking
// location adds the group to its directory with an open attempt at an epoch of the next
// home generation (beginRehome), seals, and either chooses a main as a promotion does
// (choosePromotion) or abandons the attempt as a promotion does (abandonPromotion): the
// group stays in its new home, whose promotion rounds go on. The replaced location, once
// it hears of the later generation, keeps only a note that the group moved (disownGroup).

const (
	kindBeginRehome  = "beginRehome"
	kindReopenRehome = "reopenRehome"
	kindDisownGroup  = "disownGroup"
)

// beginRehome adds Group, taken over from the home it names as RehomedFrom, with its
// Promotion open in the sealing phase at an epoch of its (new) home generation's band.
type beginRehome struct {
	Group command.GroupInfo `json:"group"`
}

// reopenRehome raises the open attempt of a rehome to Epoch: a copy answered that it had
// promised a later epoch than the attempt's.
type reopenRehome struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
}

// disownGroup records that group Server is homed in Home at generation HomeGen, later
// than this location's: the group leaves this directory for good.
type disownGroup struct {
	Server  uint16 `json:"server"`
	Home    string `json:"home"`
	HomeGen uint64 `json:"homeGen"`
}

func (beginRehome) kind() string  { return kindBeginRehome }
func (reopenRehome) kind() string { return kindReopenRehome }
func (disownGroup) kind() string  { return kindDisownGroup }

func (c beginRehome) applyTo(s *dirState) error {
	g := c.Group
	p := g.Promotion
	if g.Server == 0 || g.Home == "" || g.RehomedFrom == "" || g.HomeGen == 0 || p == nil ||
		p.Phase != command.PromotionSealing || p.Reason != command.ReasonRehome {
		return refuse("beginRehome of group %d: the record needs a home, the home it replaces, a generation and an open rehome attempt", g.Server)
	}
	if _, ok := s.Groups[g.Server]; ok {
		return refuse("beginRehome of group %d: this location homes it already", g.Server)
	}
	if m, ok := s.Moved[g.Server]; ok && m.HomeGen >= g.HomeGen {
		return refuse("beginRehome of group %d at generation %d: it moved to %q at generation %d", g.Server, g.HomeGen, m.Home, m.HomeGen)
	}
	if p.Epoch < command.EpochBand(g.HomeGen) || p.Epoch <= g.Epoch || command.HomeGenOfEpoch(p.Epoch) != g.HomeGen {
		return refuse("beginRehome of group %d: epoch %d is not in generation %d's band above epoch %d", g.Server, p.Epoch, g.HomeGen, g.Epoch)
	}
	if len(g.Voters()) == 0 {
		return refuse("beginRehome of group %d: it has no voting sibling to take over from", g.Server)
	}
	delete(s.Moved, g.Server)
	rec := cloneGroup(&g)
	s.Groups[g.Server] = &rec
	return nil
}

func (c reopenRehome) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok || g.Promotion == nil || g.Promotion.Reason != command.ReasonRehome || g.Promotion.Phase != command.PromotionSealing {
		return refuse("reopenRehome of group %d: no rehome attempt is open", c.Server)
	}
	if c.Epoch <= g.Promotion.Epoch || command.HomeGenOfEpoch(c.Epoch) != g.HomeGen {
		return refuse("reopenRehome of group %d: epoch %d is not above %d within generation %d", c.Server, c.Epoch, g.Promotion.Epoch, g.HomeGen)
	}
	g.Promotion.Epoch = c.Epoch
	return nil
}

func (c disownGroup) applyTo(s *dirState) error {
	if c.Home == "" || c.HomeGen == 0 {
		return refuse("disownGroup %d: home and generation are required", c.Server)
	}
	if m, ok := s.Moved[c.Server]; ok && m.HomeGen >= c.HomeGen {
		return refuse("disownGroup %d: moved at generation %d already", c.Server, m.HomeGen)
	}
	if g, ok := s.Groups[c.Server]; ok {
		if g.HomeGen >= c.HomeGen {
			return refuse("disownGroup %d at generation %d: homed here at generation %d", c.Server, c.HomeGen, g.HomeGen)
		}
		delete(s.Groups, c.Server)
	}
	s.Moved[c.Server] = command.MovedGroup{Server: c.Server, Home: c.Home, HomeGen: c.HomeGen}
	return nil
}
