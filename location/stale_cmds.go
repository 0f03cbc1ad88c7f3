package location

import (
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// The FSM side of demotions (docs/replication.md cases 5 and 12). Demoting a voter is a config
// change like removing one (case 1): a pending config without it, under which the main
// writes with the joint quorum until it activates the config; the member stays a voter of
// the active config until then, and takes its new state on activation. A stale copy comes
// back as a learner (syncing) once its node rebuilt it, and votes again only through the
// usual proposeVoter/activate.

const (
	kindDemote      = "demote"
	kindReviveStale = "reviveStale"
)

// demote commits a pending config of group Server without Nodes, voting siblings of the
// active config; on activation they become To: command.SiblingStale (their node stopped
// reporting the copy for copy-timeout) or command.SiblingSyncing (their copy reported
// another copy ID than the one recorded: the disk was lost).
type demote struct {
	Server uint16   `json:"server"`
	Nodes  []uint16 `json:"nodes"`
	To     string   `json:"to"`
}

// reviveStale makes the stale member Node of group Server a syncing learner again. Its
// StaleCopyID is kept, so nobody takes the old copy for the rebuilt one.
type reviveStale struct {
	Server uint16 `json:"server"`
	Node   uint16 `json:"node"`
}

func (demote) kind() string      { return kindDemote }
func (reviveStale) kind() string { return kindReviveStale }

func (c demote) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("demote %v of group %d to %s: no such group", c.Nodes, c.Server, c.To)
	}
	if c.To != command.SiblingStale && c.To != command.SiblingSyncing {
		return refuse("demote %v of group %d: state %q is neither %q nor %q", c.Nodes, c.Server, c.To,
			command.SiblingStale, command.SiblingSyncing)
	}
	if len(c.Nodes) == 0 {
		return refuse("demote in group %d to %s: no node given", c.Server, c.To)
	}
	if g.Pending != nil {
		return refuse("demote %v of group %d: config %d is still pending (one membership change at a time)",
			c.Nodes, c.Server, g.Pending.Version)
	}
	if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
		return refuse("demote %v of group %d: promotion %d is sealing", c.Nodes, c.Server, g.Promotion.Epoch)
	}
	for i, n := range c.Nodes {
		if slices.Contains(c.Nodes[:i], n) {
			return refuse("demote %v of group %d: node %d is listed twice", c.Nodes, c.Server, n)
		}
		m := member(g, n)
		if m == nil || m.State != command.SiblingVoting || !slices.Contains(g.Active.Voters, n) {
			return refuse("demote %v of group %d: node %d is not a voting sibling", c.Nodes, c.Server, n)
		}
	}
	voters := slices.DeleteFunc(slices.Clone(g.Active.Voters), func(n uint16) bool { return slices.Contains(c.Nodes, n) })
	g.Pending = &command.Config{Version: g.Active.Version + 1, Voters: voters}
	for _, n := range c.Nodes {
		member(g, n).Demote = c.To
	}
	return nil
}

func (c reviveStale) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("reviveStale %d in group %d: no such group", c.Node, c.Server)
	}
	m := member(g, c.Node)
	if m == nil || m.State != command.SiblingStale {
		return refuse("reviveStale %d in group %d: the node holds no stale copy", c.Node, c.Server)
	}
	m.State = command.SiblingSyncing
	return nil
}

// settleMembers brings g's members in line with its just-activated config: a voter it
// leaves out is removed, or demoted when a demote command marked it; a new voter becomes
// voting with the copy ID it reported (copyIDs), its stale copy forgotten.
func settleMembers(g *command.GroupInfo, copyIDs []copyID) {
	g.Siblings = slices.DeleteFunc(g.Siblings, func(m command.Member) bool {
		return m.State == command.SiblingVoting && m.Demote == "" && !slices.Contains(g.Active.Voters, m.Node)
	})
	for i := range g.Siblings {
		m := &g.Siblings[i]
		voter := slices.Contains(g.Active.Voters, m.Node)
		switch {
		case m.Demote != "" && !voter:
			if m.Demote == command.SiblingStale && m.CopyID != "" {
				m.StaleCopyID = m.CopyID
			}
			m.State, m.CopyID, m.Demote = m.Demote, "", ""
		case m.Demote != "":
			m.Demote = "" // a later config kept it after all
		case m.State != command.SiblingVoting && voter:
			m.State = command.SiblingVoting
			for _, id := range copyIDs {
				if id.Node == m.Node {
					m.CopyID = id.CopyID
					m.StaleCopyID = ""
				}
			}
		}
	}
}
