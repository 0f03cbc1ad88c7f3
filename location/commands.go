package location

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// The commands of the directory FSM. Each is one Go type with a kind tag; on the raft log
// a command is the JSON envelope {"kind": ..., "body": <the command>}. Every applyTo
// validates first and changes the state only when it accepts, so a refused command leaves
// the directory exactly as it was on every controller. applyTo must be deterministic: no
// clocks, no randomness, no dependence on map order.

const (
	kindRegisterController = "registerController"
	kindJoinNode           = "joinNode"
	kindAddLearner         = "addLearner"
	kindProposeVoter       = "proposeVoter"
	kindActivate           = "activate"
)

// dirCommand is one directory change.
type dirCommand interface {
	kind() string
	applyTo(s *dirState) error
}

// registerController records (or updates) a controller's addresses, so that every
// controller can name the leader's HTTP address in a LeaderHint.
type registerController struct {
	Controller controllerRecord `json:"controller"`
}

// joinNode records a node at its start. It creates the node's own group (the node is its
// main, epoch 1, an empty active config) the first time the node joins, unless the node is
// a Guest: a node of another location, which joins every location so that their groups
// may keep copies on it (docs/locations.md); its own group is homed in its own location.
type joinNode struct {
	ID          uint16 `json:"id"`
	Addr        string `json:"addr"`
	Location    string `json:"location"`
	Instance    string `json:"instance"`
	Incarnation uint64 `json:"incarnation"`
	Guest       bool   `json:"guest,omitempty"`
	// Wiped: the process adopted an incarnation recorded above its own (JoinRequest.Wiped).
	Wiped bool `json:"wiped,omitempty"`
}

// addLearner makes Node a syncing sibling of group Server.
type addLearner struct {
	Server uint16 `json:"server"`
	Node   uint16 `json:"node"`
}

// proposeVoter commits a pending config that adds Node to the voters of group Server.
type proposeVoter struct {
	Server uint16 `json:"server"`
	Node   uint16 `json:"node"`
}

// copyID is the copy ID a sibling reported for its copy of a group.
type copyID struct {
	Node   uint16 `json:"node"`
	CopyID string `json:"copyId"`
}

// activate makes the pending config Version of group Server the active one, after the main
// reported an entry committed under it. CopyIDs are recorded for the siblings that become
// voting, so a copy that later reports another ID (its disk was lost) can be recognised.
type activate struct {
	Server  uint16   `json:"server"`
	Version uint64   `json:"version"`
	CopyIDs []copyID `json:"copyIds,omitempty"`
	// AtMs is when the proposing leader knew the main's entry under the config committed
	// (Unix milliseconds; 0: not given). For a promotion's config it is the moment the new
	// main's barrier committed, which ends the promotion's recorded duration.
	AtMs int64 `json:"atMs,omitempty"`
}

func (registerController) kind() string { return kindRegisterController }
func (joinNode) kind() string           { return kindJoinNode }
func (addLearner) kind() string         { return kindAddLearner }
func (proposeVoter) kind() string       { return kindProposeVoter }
func (activate) kind() string           { return kindActivate }

func (c registerController) applyTo(s *dirState) error {
	r := c.Controller
	if r.ID == "" || r.HTTPAddr == "" || r.RaftAddr == "" || r.Location == "" {
		return refuse("registerController %+v: id, httpAddr, raftAddr and location are required", r)
	}
	s.Controllers[r.ID] = r
	return nil
}

func (c joinNode) applyTo(s *dirState) error {
	if c.ID == 0 || c.Addr == "" || c.Instance == "" || c.Location == "" {
		return refuse("joinNode %d: id, addr, location and instance are required (got addr=%q location=%q instance=%q)",
			c.ID, c.Addr, c.Location, c.Instance)
	}
	if old, ok := s.Nodes[c.ID]; ok && old.Location != c.Location {
		// Server IDs name groups across every location: one ID, one node.
		return refuse("joinNode %d of location %q: the directory already has node %d in location %q",
			c.ID, c.Location, c.ID, old.Location)
	}
	if g, ok := s.Groups[c.ID]; c.Guest && ok && g.HomeGen == 0 {
		// A group this location took over (rehome) may have its creator as a guest.
		return refuse("joinNode %d of location %q as a guest: this location homes a group %d", c.ID, c.Location, c.ID)
	}
	old, known := s.Nodes[c.ID]
	inc, restarted, wiped := c.Incarnation, c.Wiped, c.Wiped
	if known {
		inc, restarted, wiped = joinIncarnation(old, c)
	} else {
		// A first join here can still be named by a group: by the record a rehome took over
		// from the nodes' views of another location. A node that says its data directory
		// was wiped holds none of that record's copies; one that does not keeps its roles.
		old = nodeRecord{ID: c.ID}
	}
	if wiped {
		// A voting copy whose ID was never recorded (it became voting while the leader
		// had no report from it) would otherwise be counted from any copy the node
		// holds: what it holds now is not the copy that voted. Record an ID no copy has,
		// so that its seals are not counted and the copy is demoted as amnesiac.
		// The same for a learner already named in a pending config: a seal it gave
		// before the wipe may still be counted by an open attempt, and must not make
		// its new, empty copy the group's main (choosePromotion checks the ID).
		for _, g := range s.sortedGroupPtrs() {
			i := siblingIndex(g, c.ID)
			if i < 0 || g.Siblings[i].CopyID != "" {
				continue
			}
			if g.Siblings[i].State == command.SiblingVoting || slices.Contains(g.Voters(), c.ID) {
				g.Siblings[i].CopyID = fmt.Sprintf("lost-at-incarnation-%d", inc)
			}
		}
	}
	if restarted {
		for _, g := range s.sortedGroupPtrs() {
			if g.Main != c.ID {
				continue
			}
			if rehomedWithoutMain(g) && !wiped {
				// Named only by the record a rehome took over, which may be older than a
				// promotion of the old home: nothing shows that its log holds every
				// acknowledged write, so it never goes on in a fresh epoch (as refreshMain
				// refuses). The group has no main until a promotion among its voters, whose
				// seals check the record (docs/locations.md "Moving a home", rule 5); the
				// node keeps its copy as a learner.
				if siblingIndex(g, c.ID) < 0 {
					g.Siblings = append(g.Siblings, command.Member{Node: c.ID, State: command.SiblingSyncing, CopyID: g.MainCopyID})
				}
				g.Main, g.MainCopyID = 0, ""
				continue
			}
			if wiped && len(g.Voters()) > 0 {
				// Its copy is gone with its data directory: as main it would write a
				// barrier at seq 1 over the siblings' committed entries. The group has
				// no main until a promotion among its voters; the node is a learner.
				// Its seal counts only from the copy it had as a voter, which is gone.
				// A main whose voting copy was never recorded gets an ID no copy has,
				// as a wiped voter does above: its new copy must not count as the one
				// that held the group's committed entries.
				lost := g.MainCopyID
				if lost == "" {
					lost = fmt.Sprintf("lost-at-incarnation-%d", inc)
				}
				g.Main = 0
				if siblingIndex(g, c.ID) < 0 {
					g.Siblings = append(g.Siblings, command.Member{Node: c.ID, State: command.SiblingSyncing, CopyID: lost})
				}
				g.MainCopyID = ""
				continue
			}
			// A main that restarted may have lost entries it had already sent to
			// siblings (it sends while its own fsync is in flight). It never continues
			// in the epoch it had: a fresh epoch makes whatever it writes next distinct
			// from anything a sibling holds of the old one. The fresh epoch is the
			// group's next unused one: an open promotion attempt has consumed its epoch
			// already (seals of it may be out), so the restarted main takes the one after
			// it, and the attempt is abandoned (docs/replication.md case 5: an epoch is never
			// reused for a different main).
			if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
				g.Promotion.Phase = command.PromotionAbandoned
			}
			g.Epoch = g.NextEpoch()
		}
	}
	old.Addr, old.Location, old.Instance, old.Incarnation = c.Addr, c.Location, c.Instance, inc
	s.Nodes[c.ID] = old
	if _, moved := s.Moved[c.ID]; moved {
		return nil // homed in another location now (rehome): never created again here
	}
	if _, ok := s.Groups[c.ID]; !ok && !c.Guest {
		s.Groups[c.ID] = &command.GroupInfo{
			Server: c.ID, Epoch: 1, Main: c.ID,
			Siblings: []command.Member{},
			Active:   command.Config{Version: 1, Voters: []uint16{}},
		}
	}
	return nil
}

// joinIncarnation decides the incarnation recorded for join c of a known node. The same
// instance (one process: a retried join, or a join after it adopted the recorded
// incarnation) changes nothing. Another instance is a restart; when its incarnation is not
// above the recorded one, its incarnation counter did not survive, so its data directory
// was wiped or replaced (wiped): it gets the recorded incarnation + 1, which the node
// adopts from the directory it is answered (NodeInfo.Incarnation). A process that adopted
// one says so (c.Wiped): its guest joins carry the adopted incarnation, above what the
// other locations recorded, and are wiped returns there too.
func joinIncarnation(old nodeRecord, c joinNode) (inc uint64, restarted, wiped bool) {
	if c.Instance == old.Instance {
		return max(old.Incarnation, c.Incarnation), false, false
	}
	if c.Incarnation <= old.Incarnation {
		return old.Incarnation + 1, true, true
	}
	return c.Incarnation, true, c.Wiped
}

func (c addLearner) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("addLearner %d to group %d: no such group", c.Node, c.Server)
	}
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse("addLearner %d to group %d: no such node", c.Node, c.Server)
	}
	if n.Spare {
		return refuse("addLearner %d to group %d: the node is spare", c.Node, c.Server)
	}
	if g.Main == c.Node {
		return refuse("addLearner %d to group %d: the node is the group's main", c.Node, c.Server)
	}
	if siblingIndex(g, c.Node) >= 0 {
		return refuse("addLearner %d to group %d: the node already holds a copy", c.Node, c.Server)
	}
	g.Siblings = append(g.Siblings, command.Member{Node: c.Node, State: command.SiblingSyncing})
	return nil
}

func (c proposeVoter) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("proposeVoter %d in group %d: no such group", c.Node, c.Server)
	}
	if g.Pending != nil {
		return refuse("proposeVoter %d in group %d: config %d is still pending (one membership change at a time)",
			c.Node, c.Server, g.Pending.Version)
	}
	if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing {
		// The open attempt seals the configs it saw; a new one would escape its seals.
		return refuse("proposeVoter %d in group %d: promotion %d is sealing", c.Node, c.Server, g.Promotion.Epoch)
	}
	i := siblingIndex(g, c.Node)
	if i < 0 {
		return refuse("proposeVoter %d in group %d: the node is not a sibling", c.Node, c.Server)
	}
	if g.Siblings[i].State != command.SiblingSyncing || slices.Contains(g.Active.Voters, c.Node) {
		return refuse("proposeVoter %d in group %d: the node already votes", c.Node, c.Server)
	}
	voters := append(slices.Clone(g.Active.Voters), c.Node)
	slices.Sort(voters)
	g.Pending = &command.Config{Version: g.Active.Version + 1, Voters: voters}
	return nil
}

func (c activate) applyTo(s *dirState) error {
	g, ok := s.Groups[c.Server]
	if !ok {
		return refuse("activate config %d of group %d: no such group", c.Version, c.Server)
	}
	if g.Pending == nil || g.Pending.Version != c.Version {
		pending := "none"
		if g.Pending != nil {
			pending = fmt.Sprint(g.Pending.Version)
		}
		return refuse("activate config %d of group %d: the pending config is %s", c.Version, c.Server, pending)
	}
	g.Active = *g.Pending
	g.Pending = nil
	if p := g.Promotion; p != nil && p.Phase == command.PromotionChosen {
		s.recordPromotion(g, p, c.AtMs)
		g.Promotion = nil
	}
	// A voter the new config leaves out was removed (removeSibling, drain) and leaves the
	// group, unless a demote marked it (stale_cmds.go).
	settleMembers(g, c.CopyIDs)
	return nil
}

// envelope is a command as stored in the raft log.
type envelope struct {
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// encodeCommand serialises c for raft.
func encodeCommand(c dirCommand) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.kind(), err)
	}
	return json.Marshal(envelope{Kind: c.kind(), Body: body})
}

// decodeCommand parses a raft log entry written by encodeCommand.
func decodeCommand(data []byte) (dirCommand, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("decode command envelope (%d bytes): %w", len(data), err)
	}
	var c dirCommand
	var err error
	switch env.Kind {
	case kindRegisterController:
		var v registerController
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindJoinNode:
		var v joinNode
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindAddLearner:
		var v addLearner
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindProposeVoter:
		var v proposeVoter
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindActivate:
		var v activate
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindRemoveSibling:
		var v removeSibling
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindSetSpare:
		var v setSpare
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindRemoveNode:
		var v removeNode
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindDropLearner:
		var v dropLearner
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindSetManaged:
		var v setManaged
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindBeginPromotion:
		var v beginPromotion
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindChoosePromotion:
		var v choosePromotion
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindAbandonPromotion:
		var v abandonPromotion
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindRefreshMain:
		var v refreshMain
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindDemote:
		var v demote
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindReviveStale:
		var v reviveStale
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindCreateRole:
		var v createRole
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindDeleteRole:
		var v deleteRole
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindCreateToken:
		var v createToken
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindRevokeToken:
		var v revokeToken
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindBeginRehome:
		var v beginRehome
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindReopenRehome:
		var v reopenRehome
		err = json.Unmarshal(env.Body, &v)
		c = v
	case kindDisownGroup:
		var v disownGroup
		err = json.Unmarshal(env.Body, &v)
		c = v
	default:
		return nil, fmt.Errorf("decode command: unknown kind %q", env.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s command body %s: %w", env.Kind, env.Body, err)
	}
	return c, nil
}
