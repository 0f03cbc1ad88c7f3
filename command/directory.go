package command

// The directory is the location controller's replicated map of nodes and groups. These
// types are shared by the controller (which owns it) and nodes (which follow it).

// Node states in the directory and in /v1/status.
const (
	NodeUp    = "up"
	NodeDown  = "down"
	NodeSpare = "spare"
	// NodeDegraded: the node heartbeats but its store cannot write or fsync (its
	// heartbeat says why); it serves no group, and as main it is replaced after down-after.
	NodeDegraded = "degraded"
)

// Sibling states. A syncing sibling is a learner: it receives the log but is never counted
// in a quorum and never chosen. A voting sibling is in the group's config. A stale sibling
// is a copy demoted after its node did not report it for copy-timeout (docs/replication.md case
// 12): it is in no config, the main does not replicate to it, compaction and vacuuming do
// not wait for it, and it serves nothing. Its node must resync it from a snapshot (record
// resyncing, wipe, start a fresh copy with a new copy ID); the controller then makes it
// syncing again.
const (
	SiblingSyncing = "syncing"
	SiblingVoting  = "voting"
	// SiblingStale: a copy unreachable past copy-timeout, demoted by a config change. It
	// counts nowhere, is not replicated to, and is wiped and registered again when its node
	// returns (docs/replication.md case 12). Status shows it as syncing with "stale": true.
	SiblingStale = "stale"
)

// NodeInfo is what the directory knows of one node.
type NodeInfo struct {
	ID          uint16 `json:"id"`
	Addr        string `json:"addr"`
	Location    string `json:"location"`
	State       string `json:"state"`
	Instance    string `json:"instance"`
	Incarnation uint64 `json:"incarnation"`
	Generation  uint64 `json:"generation"`
}

// Member is one sibling of a group. CopyID is recorded when the copy becomes voting.
type Member struct {
	Node   uint16 `json:"node"`
	State  string `json:"state"`
	CopyID string `json:"copyId,omitempty"`
	// StaleCopyID is the copy ID the member had when it was demoted to stale. It stays set
	// while the member is stale and after it returns to syncing, until it votes again with a
	// new copy. A node whose copy of the group still has this ID holds the old, stale data:
	// it must resync (record resyncing, wipe, make a fresh copy with a new ID) before it
	// takes any role in the group; the controller never proposes such a copy as a voter.
	StaleCopyID string `json:"staleCopyId,omitempty"`
	// Demote is set on a voting member that the pending config leaves out without removing
	// it: the state it takes (SiblingStale or SiblingSyncing) when that config is activated.
	// Until then it is still a voter of the active config (joint quorum, docs/replication.md
	// case 1).
	Demote string `json:"demote,omitempty"`
}

// Config is a versioned voting set of a group. Voters never include the main.
type Config struct {
	Version uint64   `json:"version"`
	Voters  []uint16 `json:"voters"`
}

// GroupInfo is the directory record of one group. Main is 0 when the group has no main.
// Pending, when set, is a committed membership change not yet activated by the main:
// until it is, writes need a quorum of Active and of Pending (joint quorum).
type GroupInfo struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	Main   uint16 `json:"main"`
	// MainCopyID is the copy ID the main had as the voting sibling a promotion chose ("" for
	// a group's first main, which is in no voting config). Until the promotion's config is
	// activated the main is still a voter of the active one, and when it is back among the
	// siblings its seal counts only from that same copy.
	MainCopyID string   `json:"mainCopyId,omitempty"`
	Siblings   []Member `json:"siblings"`
	Active     Config   `json:"active"`
	Pending    *Config  `json:"pending,omitempty"`
	// Promotion is the record of the group's latest promotion attempt; its epoch is
	// consumed even if the attempt is abandoned, so no epoch is ever reused.
	Promotion *Promotion `json:"promotion,omitempty"`
	// Managed: an operator changed the membership (registerSibling, removeSibling, drain);
	// the controller no longer adds siblings to this group on its own.
	Managed bool `json:"managed,omitempty"`
	// Home is the location whose controllers own the group: they alone raise its epoch,
	// change its configs and promote its main, wherever its copies live
	// (docs/replication.md case 6, docs/locations.md). A location's directory lists only
	// the groups homed there.
	Home string `json:"home,omitempty"`
	// HomeGen counts the moves of the group's home (rehome); RehomedFrom is the home the
	// latest move replaced. Every epoch the home opens lies in its generation's band
	// (EpochBand), so (HomeGen, epoch) orders every promise a copy makes, across homes.
	HomeGen     uint64 `json:"homeGen,omitempty"`
	RehomedFrom string `json:"rehomedFrom,omitempty"`
}

// MovedGroup is a group this location homed once and that another location took over
// (rehome): its directory keeps only this, so that it never acts for the group again.
type MovedGroup struct {
	Server  uint16 `json:"server"`
	Home    string `json:"home"`
	HomeGen uint64 `json:"homeGen"`
}

// homeGenBits is the width of an epoch's place within its home generation's band.
const homeGenBits = 32

// EpochBand is the lowest epoch of home generation gen: every epoch a group's home opens
// after its gen-th move is at least this, and below the next band. Epochs stay below 2^53
// (exact in JSON numbers) for the first 2^21 moves of a group.
func EpochBand(gen uint64) uint64 { return gen << homeGenBits }

// HomeGenOfEpoch is the home generation whose band holds epoch.
func HomeGenOfEpoch(epoch uint64) uint64 { return epoch >> homeGenBits }

// Promotion phases.
const (
	PromotionSealing   = "sealing"
	PromotionChosen    = "chosen"
	PromotionAbandoned = "abandoned"
)

// Promotion is one attempt to give a group a new main in a new epoch.
type Promotion struct {
	Epoch  uint64 `json:"epoch"`
	Phase  string `json:"phase"`
	Chosen uint16 `json:"chosen,omitempty"`
	// From is the main the attempt replaces.
	From uint16 `json:"from"`
	// Reason is why the attempt began (a command.Reason* value) and SuspectedMs when the
	// leader first had cause for it (Unix milliseconds; 0: unknown): the start of the
	// promotion's recorded duration.
	Reason      string `json:"reason,omitempty"`
	SuspectedMs int64  `json:"suspectedMs,omitempty"`
}

// NextEpoch is the epoch a new promotion attempt of the group must use.
func (g *GroupInfo) NextEpoch() uint64 {
	e := g.Epoch
	if g.Promotion != nil && g.Promotion.Epoch > e {
		e = g.Promotion.Epoch
	}
	return e + 1
}

// Voters returns every node that votes in the active or the pending config.
func (g *GroupInfo) Voters() []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	add := func(vs []uint16) {
		for _, v := range vs {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	add(g.Active.Voters)
	if g.Pending != nil {
		add(g.Pending.Voters)
	}
	return out
}

// Directory is a snapshot of the controller's state at raft index Index. Location names
// the location whose controllers answered it: its groups are the ones homed there, its
// nodes that location's own and the guests of other locations that joined it.
type Directory struct {
	Index    uint64      `json:"index"`
	Location string      `json:"location,omitempty"`
	Nodes    []NodeInfo  `json:"nodes"`
	Groups   []GroupInfo `json:"groups"`
	// Moved lists the groups this location homed until another one took them over.
	Moved []MovedGroup `json:"moved,omitempty"`
	// Roles and Tokens (docs/protocol.md §7), by name and by hash; tokens are never
	// stored or sent themselves, only their HashToken.
	Roles  []Role      `json:"roles,omitempty"`
	Tokens []TokenInfo `json:"tokens,omitempty"`
}

// Group returns the record of group server, or nil.
func (d *Directory) Group(server uint16) *GroupInfo {
	for i := range d.Groups {
		if d.Groups[i].Server == server {
			return &d.Groups[i]
		}
	}
	return nil
}

// NodeByID returns the record of node id, or nil.
func (d *Directory) NodeByID(id uint16) *NodeInfo {
	for i := range d.Nodes {
		if d.Nodes[i].ID == id {
			return &d.Nodes[i]
		}
	}
	return nil
}

// The node <-> controller protocol (HTTP JSON on the controller's listener):
//
//	POST /v1/internal/join        JoinRequest  -> Directory
//	POST /v1/internal/heartbeat   Heartbeat    -> Directory
//	GET  /v1/internal/directory?after=N        -> Directory (long poll: answers when
//	                                              Index > N, or after ~5 s with the current one)
//
// Only the raft leader answers them. A follower answers 421 with LeaderHint naming the
// leader's HTTP address (empty when unknown); a node then retries there.

// The controller <-> node promotion protocol (HTTP JSON on the node's listener):
//
//	POST /v1/internal/seal   SealRequest -> SealReply
//
// and node -> controller leader:
//
//	POST /v1/internal/suspect   Suspect -> 200
//
// A seal makes a sibling adopt (and fsync) the attempt's epoch, so it refuses the old main
// from then on, and report its log position. An automatic seal is refused (409) while the
// sibling still hears the main.

// SealRequest asks a sibling to join epoch Epoch of group Server, replacing main From.
type SealRequest struct {
	Server uint16 `json:"server"`
	Epoch  uint64 `json:"epoch"`
	From   uint16 `json:"from"`
	// Auto: the controller decided on its own; the sibling must agree the main is gone.
	Auto bool `json:"auto"`
	// Home is the location of the controllers that seal: a copy refuses a seal from any
	// location but its group's home (docs/replication.md case 6).
	Home string `json:"home,omitempty"`
	// HomeGen is the sealing home's generation, and RehomedFrom the home it replaced (set
	// once a group was moved). A copy that recorded an older generation takes the seal only
	// when it hears no controller of the home it knew (docs/locations.md "Moving a home").
	HomeGen     uint64 `json:"homeGen,omitempty"`
	RehomedFrom string `json:"rehomedFrom,omitempty"`
}

// SealReply is a sealed sibling's position: its last durable entry, commit point and copy.
// Epoch is the epoch the copy holds after the seal: above the request's when it had
// promised a later one already. Config is the highest config version the copy ever
// followed (its own as main, or a main's appends it took): a record whose configs are all
// older is stale (docs/locations.md "Moving a home").
type SealReply struct {
	Node      uint16 `json:"node"`
	Epoch     uint64 `json:"epoch,omitempty"`
	LastEpoch uint64 `json:"lastEpoch"`
	LastSeq   uint64 `json:"lastSeq"`
	CommitSeq uint64 `json:"commitSeq"`
	CopyID    string `json:"copyId"`
	Config    uint64 `json:"config,omitempty"`
}

// Suspect tells the controller leader that Node lost its replication stream from Main.
type Suspect struct {
	Node   uint16 `json:"node"`
	Server uint16 `json:"server"`
	Main   uint16 `json:"main"`
}

// JoinRequest is sent by a node at every start, to its own location's controllers and then,
// as a guest, to every other location's. Wiped says that this process adopted the
// incarnation a controller recorded, above its own: its counter did not survive, so its data
// directory was wiped or replaced. A guest join carries the adopted incarnation, which the
// other locations cannot tell from a restart's; Wiped tells them.
type JoinRequest struct {
	ID          uint16 `json:"id"`
	Addr        string `json:"addr"`
	Location    string `json:"location"`
	Instance    string `json:"instance"`
	Incarnation uint64 `json:"incarnation"`
	Wiped       bool   `json:"wiped,omitempty"`
}

// LeaderHint is a follower's answer to a request only the leader serves.
type LeaderHint struct {
	Leader string `json:"leader"`
}

// Heartbeat is sent by every node every down-after/4; it reports each copy the node holds.
type Heartbeat struct {
	Node        uint16        `json:"node"`
	Instance    string        `json:"instance"`
	Incarnation uint64        `json:"incarnation"`
	Generation  uint64        `json:"generation"`
	Groups      []GroupReport `json:"groups"`
	// Degraded, when set, says why the node's store cannot write or fsync (its disk is
	// full or failing): the node serves no group until it works again.
	Degraded string `json:"degraded,omitempty"`
}

// Roles a node reports for a copy.
const (
	RoleMain    = "main"
	RoleSibling = "sibling"
)

// GroupReport is one copy's position. A main also reports its siblings' progress and the
// highest config version it has committed an entry under (which activates a pending config).
type GroupReport struct {
	Server    uint16            `json:"server"`
	Role      string            `json:"role"`
	Epoch     uint64            `json:"epoch"`
	LastEpoch uint64            `json:"lastEpoch"`
	LastSeq   uint64            `json:"lastSeq"`
	CommitSeq uint64            `json:"commitSeq"`
	Applied   uint64            `json:"applied"`
	CopyID    string            `json:"copyId"`
	Siblings  []SiblingProgress `json:"siblings,omitempty"`
	Activated uint64            `json:"activated,omitempty"`
	// Load is a main's write load over the last minute (the page's charts).
	Load *GroupLoad `json:"load,omitempty"`
	// Resyncing is true while the copy is being rebuilt from a snapshot (after it was
	// wiped: stale, below the horizon, or divergence point not found). Such a copy has a
	// new CopyID, reports position 0 until the snapshot is in, and counts nowhere.
	Resyncing bool `json:"resyncing,omitempty"`
	// Home and HomeGen are the home this copy recorded with its latest seal (empty: never
	// sealed by a moved home). A home that sees a later generation than its own was
	// replaced and drops the group.
	Home    string `json:"home,omitempty"`
	HomeGen uint64 `json:"homeGen,omitempty"`
}

// GroupView is what a node knows of one group (GET /v1/internal/group?server=N): the
// record of its home's directory as the node last had it, with that directory's index,
// and the state of the node's own copy. A location taking the group over (rehome) builds
// its record from the newest view the nodes give.
type GroupView struct {
	Group *GroupInfo `json:"group,omitempty"`
	Index uint64     `json:"index"`
	Copy  *CopyView  `json:"copy,omitempty"`
}

// CopyView is a node's copy of a group: its promised epoch, last entry, recorded home and
// the highest config version it followed (as SealReply.Config).
type CopyView struct {
	Epoch     uint64 `json:"epoch"`
	LastEpoch uint64 `json:"lastEpoch"`
	LastSeq   uint64 `json:"lastSeq"`
	Home      string `json:"home,omitempty"`
	HomeGen   uint64 `json:"homeGen,omitempty"`
	Config    uint64 `json:"config,omitempty"`
}

// SiblingProgress is the main's view of one sibling: the highest seq it acked in the main's
// epoch, and whether it answered within down-after.
type SiblingProgress struct {
	Node   uint16 `json:"node"`
	Seq    uint64 `json:"seq"`
	Recent bool   `json:"recent"`
	// SyncDone and SyncTotal: bytes of a snapshot being sent to the sibling (the total is
	// an estimate); both 0 when none is.
	SyncDone  uint64 `json:"syncDone,omitempty"`
	SyncTotal uint64 `json:"syncTotal,omitempty"`
	// Aborted: the main gave up registering this learner (docs/register-sibling.md); the
	// controller drops it from the group and fails its registerSibling with Aborted.Err.
	Aborted *RegisterAbort `json:"aborted,omitempty"`
}
