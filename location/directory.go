package location

import (
	"fmt"
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// The directory is the replicated state of a location's controller cluster. It changes only
// through the commands of commands.go, applied in raft log order by the FSM, so every
// controller of the location holds the same directory at the same index. Liveness (whether
// a node is up) and the nodes' reported positions are deliberately not part of it: they
// change with every heartbeat and are kept in the leader's memory (leader.go).

// controllerRecord is a controller of this location as registered through raft.
type controllerRecord struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
	RaftAddr string `json:"raftAddr"`
	Location string `json:"location"`
}

// nodeRecord is command.NodeInfo without its liveness fields (State, Generation), which
// the leader computes. Spare is set by drain (later work) and excludes the node from
// receiving copies.
type nodeRecord struct {
	ID          uint16 `json:"id"`
	Addr        string `json:"addr"`
	Location    string `json:"location"`
	Instance    string `json:"instance"`
	Incarnation uint64 `json:"incarnation"`
	Spare       bool   `json:"spare,omitempty"`
}

// dirState is the FSM's state. Index is the raft index of the last command applied
// (refused commands included: they occupy an index all the same).
type dirState struct {
	Index       uint64
	Controllers map[string]controllerRecord
	Nodes       map[uint16]nodeRecord
	Groups      map[uint16]*command.GroupInfo
	// Moved are the groups homed here once and taken over by another location (rehome).
	Moved map[uint16]command.MovedGroup
	// Promotions are the last completed promotions, oldest first (promotion_history.go).
	Promotions []promotionRecord
	// Roles by name and Tokens by hash (auth_cmds.go).
	Roles  map[string]command.Role
	Tokens map[string]command.TokenInfo
}

func newDirState() *dirState {
	return &dirState{
		Controllers: map[string]controllerRecord{},
		Nodes:       map[uint16]nodeRecord{},
		Groups:      map[uint16]*command.GroupInfo{},
		Moved:       map[uint16]command.MovedGroup{},
		Roles:       map[string]command.Role{},
		Tokens:      map[string]command.TokenInfo{},
	}
}

// cloneGroup deep-copies g so that readers never share slices with the FSM.
func cloneGroup(g *command.GroupInfo) command.GroupInfo {
	out := *g
	out.Siblings = slices.Clone(g.Siblings)
	out.Active.Voters = slices.Clone(g.Active.Voters)
	if g.Pending != nil {
		p := *g.Pending
		p.Voters = slices.Clone(g.Pending.Voters)
		out.Pending = &p
	}
	if g.Promotion != nil {
		pr := *g.Promotion
		out.Promotion = &pr
	}
	return out
}

// sortedControllers returns the controllers ordered by ID.
func (s *dirState) sortedControllers() []controllerRecord {
	out := make([]controllerRecord, 0, len(s.Controllers))
	for _, c := range s.Controllers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b controllerRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// sortedNodes returns the node records ordered by ID.
func (s *dirState) sortedNodes() []nodeRecord {
	out := make([]nodeRecord, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b nodeRecord) int { return int(a.ID) - int(b.ID) })
	return out
}

// sortedGroups returns deep copies of the groups ordered by server ID.
func (s *dirState) sortedGroups() []command.GroupInfo {
	out := make([]command.GroupInfo, 0, len(s.Groups))
	for _, g := range s.Groups {
		out = append(out, cloneGroup(g))
	}
	slices.SortFunc(out, func(a, b command.GroupInfo) int { return int(a.Server) - int(b.Server) })
	return out
}

// sortedGroupPtrs returns the state's own group records ordered by server ID, for commands
// that change several groups (map order must not matter).
func (s *dirState) sortedGroupPtrs() []*command.GroupInfo {
	out := make([]*command.GroupInfo, 0, len(s.Groups))
	for _, g := range s.Groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *command.GroupInfo) int { return int(a.Server) - int(b.Server) })
	return out
}

// sortedMoved returns the moved groups ordered by server ID (nil when none).
func (s *dirState) sortedMoved() []command.MovedGroup {
	var out []command.MovedGroup
	for _, m := range s.Moved {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b command.MovedGroup) int { return int(a.Server) - int(b.Server) })
	return out
}

// clone deep-copies the whole state.
func (s *dirState) clone() *dirState {
	out := newDirState()
	out.Index = s.Index
	out.Promotions = slices.Clone(s.Promotions)
	for k, v := range s.Controllers {
		out.Controllers[k] = v
	}
	for k, v := range s.Nodes {
		out.Nodes[k] = v
	}
	for k, g := range s.Groups {
		c := cloneGroup(g)
		out.Groups[k] = &c
	}
	for k, m := range s.Moved {
		out.Moved[k] = m
	}
	for k, r := range s.Roles {
		out.Roles[k] = cloneRole(r)
	}
	for k, t := range s.Tokens {
		out.Tokens[k] = t
	}
	return out
}

// directory renders the state as the shared command.Directory. state computes each
// node's liveness (the leader's view); Generation comes from the same source.
func (s *dirState) directory(state func(n nodeRecord) (string, uint64)) command.Directory {
	d := command.Directory{Index: s.Index, Nodes: []command.NodeInfo{}, Groups: s.sortedGroups(), Moved: s.sortedMoved()}
	if len(s.Roles) > 0 || len(s.Tokens) > 0 {
		d.Roles, d.Tokens = s.sortedRoles(), s.sortedTokens()
	}
	for _, n := range s.sortedNodes() {
		st, gen := state(n)
		d.Nodes = append(d.Nodes, command.NodeInfo{
			ID: n.ID, Addr: n.Addr, Location: n.Location, State: st,
			Instance: n.Instance, Incarnation: n.Incarnation, Generation: gen,
		})
	}
	return d
}

// copiesHeld counts, per node, the groups of every home it holds a copy of: this
// location's directory's, and those its heartbeats report (a node reports every copy it
// holds to every location it joined, so the groups of other homes show there too).
// Placement spreads by it, so that a node holding many copies of other homes' groups is
// not chosen first.
func copiesHeld(groups []command.GroupInfo, reports reportSet) map[uint16]int {
	held := map[uint16]map[uint16]bool{}
	add := func(node, group uint16) {
		if held[node] == nil {
			held[node] = map[uint16]bool{}
		}
		held[node][group] = true
	}
	for _, g := range groups {
		if g.Main != 0 {
			add(g.Main, g.Server)
		}
		for _, m := range g.Siblings {
			add(m.Node, g.Server)
		}
	}
	for node, reps := range reports {
		for group := range reps {
			add(node, group)
		}
	}
	out := make(map[uint16]int, len(held))
	for n, gs := range held {
		out[n] = len(gs)
	}
	return out
}

// siblingIndex returns the position of node among g's siblings, or -1.
func siblingIndex(g *command.GroupInfo, node uint16) int {
	for i, m := range g.Siblings {
		if m.Node == node {
			return i
		}
	}
	return -1
}

// refusal is the error of a command the FSM refused: the directory is unchanged.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}
