package core

import (
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// Role is what a copy does for its group.
type Role int

const (
	None Role = iota
	Main
	Sibling
)

func (r Role) String() string {
	switch r {
	case Main:
		return command.RoleMain
	case Sibling:
		return command.RoleSibling
	}
	return "none"
}

// Config fixes a Group's identity and the replication limits its main uses.
type Config struct {
	Group uint16
	Self  uint16
	// MaxBytes bounds the entry data of one Append, Window the unacked Appends in flight to
	// one sibling (sibling.MainConfig).
	MaxBytes int
	Window   int
	// DownAfter is how long a main or sibling stays "heard" after its last message.
	DownAfter time.Duration
}

// Disk is the durable state of the copy when it takes a role, and the log its core reads.
type Disk struct {
	Epoch     uint64 // highest epoch made durable (a seal's or an entry's)
	LastEpoch uint64 // epoch of the last entry
	LastSeq   uint64
	Commit    uint64 // durable commit point
	History   []sibling.EpochStart
	Log       sibling.Log
}

// Proposal is an entry the main appended: the driver logs Entry and indexes Effect (its
// pending layer, its ticket deadlines) before the next input.
type Proposal struct {
	Entry  sibling.Entry
	Effect *command.Effect
}

// RoleChange records a move from one role to another.
type RoleChange struct {
	From, To Role
	Epoch    uint64
	// Disk is the state a main or sibling role started from (To Main or To Sibling).
	Disk Disk
	// Barrier: a main new to Epoch; its first entry is a barrier (docs/replication.md case 3).
	Barrier bool
	// Reason: why a main stepped down; its pending writes fail with it (outcome unknown).
	Reason *command.Error
	// Violation: a sibling stopped because its main broke an invariant.
	Violation error
}

// Ready is what the inputs since the last call to Ready decided.
type Ready struct {
	Roles   []RoleChange
	Entries []Proposal
	// CommitFrom..CommitTo: the main's commit point moved (CommitTo 0: it did not).
	CommitFrom, CommitTo uint64
	// Woken: siblings whose acks were handled; their links may have more to send.
	Woken []uint16
	// Peers: the main's set of siblings may have changed (a new role or config).
	Peers bool
}

// Empty reports whether nothing was decided.
func (r *Ready) Empty() bool {
	return len(r.Roles) == 0 && len(r.Entries) == 0 && r.CommitTo == 0 && len(r.Woken) == 0 && !r.Peers
}

// Group is one node's copy of one group (see the package documentation).
type Group struct {
	cfg   Config
	role  Role
	epoch uint64 // the directory epoch the role serves in
	// commit is the commit point the copy acts on: a main's as its core computes it, a
	// sibling's as written. It never goes back while the copy keeps its contents.
	commit   uint64
	fencedBy uint64 // highest epoch a sibling answered this copy's main with
	sealed   uint64 // highest epoch this copy was sealed at

	// Main role.
	main       *sibling.Main
	epochFirst uint64 // seq of the main's first entry of its epoch (its barrier when new)
	newEpoch   uint64 // epoch to make durable with the next write
	configVer  uint64 // pending config the main wrote a config entry for
	configSeq  uint64 // seq of that entry (or of the barrier that activates it)
	activated  uint64 // highest config version whose entry committed
	lastAck    map[uint16]time.Time

	// Sibling role.
	follower  *sibling.Follower
	lastHeard time.Time // when the main's stream was last accepted

	rd Ready
}

// New returns a copy with no role, as it is after a start: epoch and commit are durable.
func New(cfg Config, epoch, commit uint64) *Group {
	return &Group{cfg: cfg, epoch: epoch, commit: commit}
}

// Ready returns what was decided since the last call and starts a new list. Its Entries
// and Woken are reused by the inputs after the next call: take them before that.
func (c *Group) Ready() Ready {
	rd := c.rd
	c.rd = Ready{Entries: rd.Entries[:0], Woken: rd.Woken[:0]}
	return rd
}

func (c *Group) Role() Role { return c.role }

// Epoch is the directory epoch the copy serves in (at start, its durable epoch).
func (c *Group) Epoch() uint64 { return c.epoch }

// Commit is the commit point the copy acts on.
func (c *Group) Commit() uint64 { return c.commit }

// Sealed is the highest epoch this copy was sealed at since it started.
func (c *Group) Sealed() uint64 { return c.sealed }

// FencedBy is the highest epoch a sibling refused this copy's main with.
func (c *Group) FencedBy() uint64 { return c.fencedBy }

// Activated is the highest pending config version whose entry committed under this main.
func (c *Group) Activated() uint64 { return c.activated }

// Replication is the main's core (nil unless main): links read their appends from it.
func (c *Group) Replication() *sibling.Main { return c.main }

// Follower is the sibling's core (nil unless a sibling, or sealed since the last role).
func (c *Group) Follower() *sibling.Follower { return c.follower }

// BarrierSeq is the seq of the main's first entry of its epoch (0 unless main).
func (c *Group) BarrierSeq() uint64 {
	if c.role != Main {
		return 0
	}
	return c.epochFirst
}

// BarrierCommitted reports whether the main's first entry of its epoch is committed: from
// then on everything below it is known committed too.
func (c *Group) BarrierCommitted() bool {
	return c.role == Main && c.commit >= c.epochFirst
}

// Heard reports whether a sibling accepted its main's stream within DownAfter of now.
func (c *Group) Heard(now time.Time) bool {
	return c.role == Sibling && !c.lastHeard.IsZero() && now.Sub(c.lastHeard) < c.cfg.DownAfter
}

// LastHeard is when a sibling last accepted its main's stream (zero: not in this role).
func (c *Group) LastHeard() time.Time { return c.lastHeard }

// QuorumHeard reports whether enough siblings answered within DownAfter of now to form a
// write quorum (false unless main).
func (c *Group) QuorumHeard(now time.Time) bool {
	if c.role != Main {
		return false
	}
	return c.main.Quorum().Agreed(func(n uint16) uint64 {
		if now.Sub(c.lastAck[n]) < c.cfg.DownAfter {
			return 1
		}
		return 0
	}, 1) > 0
}

// Stop ends any role without a reason for clients (the copy is being wiped or rebuilt, or
// its disk failed); a main's pending writes fail as no_main.
func (c *Group) Stop(reason *command.Error) {
	switch c.role {
	case Main:
		c.stepDown(reason)
	case Sibling:
		c.role, c.follower = None, nil
		c.rd.Roles = append(c.rd.Roles, RoleChange{From: Sibling, To: None, Epoch: c.epoch})
	default:
		c.follower = nil
	}
}

// StartOver follows a wipe: the copy holds nothing, so its commit point is 0.
func (c *Group) StartOver() {
	c.Stop(nil)
	c.commit = 0
}

// Installed follows a snapshot installed at seq: the copy is whole and committed there.
func (c *Group) Installed(seq uint64) { c.commit = seq }

func sortedPeers(m map[uint16]sibling.Progress) []uint16 {
	ids := make([]uint16, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
