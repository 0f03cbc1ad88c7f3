package location

import (
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// Membership changes an operator asks for (docs/protocol.md §3). Removing a voter is a config
// change like any other (docs/replication.md case 1): a pending config without it, activated by
// the main; the member leaves the group on activation.

const (
	kindRemoveSibling = "removeSibling"
	kindSetSpare      = "setSpare"
	kindSetManaged    = "setManaged"
	kindRemoveNode    = "removeNode"
	kindDropLearner   = "dropLearner"
)

// removeSibling takes Node out of group Server: a learner at once, a voter through a
// pending config.
type removeSibling struct {
	Server uint16 `json:"server"`
	Node   uint16 `json:"node"`
}

// setSpare marks a drained node spare (or not): it holds no copy and gets none on its own.
type setSpare struct {
	Node  uint16 `json:"node"`
	Spare bool   `json:"spare"`
}

// setManaged records that an operator manages group Server's membership.
type setManaged struct {
	Server uint16 `json:"server"`
}

// removeNode takes a spare node that holds no copy out of the directory (decommission).
type removeNode struct {
	Node uint16 `json:"node"`
}

// dropLearner takes learner Node out of group Server because its main gave the
// registration up (Abort, docs/register-sibling.md). Unlike removeSibling it leaves the
// group's Managed flag as it was, and it is refused once the copy votes in any config.
type dropLearner struct {
	Server uint16                 `json:"server"`
	Node   uint16                 `json:"node"`
	Abort  *command.RegisterAbort `json:"abort,omitempty"`
}

func (dropLearner) kind() string   { return kindDropLearner }
func (removeNode) kind() string    { return kindRemoveNode }
func (removeSibling) kind() string { return kindRemoveSibling }
func (setSpare) kind() string      { return kindSetSpare }
func (setManaged) kind() string    { return kindSetManaged }

func (c removeSibling) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("removeSibling %d from group %d: no such group", c.Node, c.Server)
	}
	i := siblingIndex(g, c.Node)
	if i < 0 {
		return refuse("removeSibling %d from group %d: not a sibling", c.Node, c.Server)
	}
	if !slices.Contains(g.Voters(), c.Node) {
		g.Siblings = slices.Delete(g.Siblings, i, i+1)
		g.Managed = true
		return nil
	}
	if g.Pending != nil {
		return refuse("removeSibling %d from group %d: config %d is still pending", c.Node, c.Server, g.Pending.Version)
	}
	if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
		return refuse("removeSibling %d from group %d: promotion %d is sealing", c.Node, c.Server, g.Promotion.Epoch)
	}
	voters := slices.DeleteFunc(slices.Clone(g.Active.Voters), func(n uint16) bool { return n == c.Node })
	g.Pending = &command.Config{Version: g.Active.Version + 1, Voters: voters}
	g.Managed = true
	return nil
}

func (c dropLearner) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("dropLearner %d from group %d: no such group", c.Node, c.Server)
	}
	i := siblingIndex(g, c.Node)
	switch {
	case i < 0:
		return refuse("dropLearner %d from group %d: not a sibling", c.Node, c.Server)
	case g.Siblings[i].State != command.SiblingSyncing || slices.Contains(g.Voters(), c.Node):
		return refuse("dropLearner %d from group %d: the copy is %s, not a learner", c.Node, c.Server, g.Siblings[i].State)
	}
	g.Siblings = slices.Delete(g.Siblings, i, i+1)
	return nil
}

func (c setSpare) applyTo(s *dirState) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse("setSpare %d: no such node", c.Node)
	}
	n.Spare = c.Spare
	s.Nodes[c.Node] = n
	return nil
}

func (c setManaged) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("setManaged %d: no such group", c.Server)
	}
	g.Managed = true
	return nil
}

func (c removeNode) applyTo(s *dirState) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse("removeNode %d: no such node", c.Node)
	}
	if !n.Spare {
		return refuse("removeNode %d: the node is not spare; drain it first", c.Node)
	}
	if held := copiesOf(s, c.Node); len(held) > 0 {
		return refuse("removeNode %d: the node still holds copies of groups %v", c.Node, held)
	}
	delete(s.Nodes, c.Node)
	return nil
}

// copiesOf lists the groups node is main or a sibling of.
func copiesOf(s *dirState, node uint16) []uint16 {
	var held []uint16
	for _, g := range s.sortedGroupPtrs() {
		if g.Main == node || siblingIndex(g, node) >= 0 {
			held = append(held, g.Server)
		}
	}
	return held
}
