package store

import (
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
	resync "github.com/sibylhq/sibyl/sync"
)

// Store is a node's durable state: for every group it holds a copy of, the command log and
// the committed layer (resources, tombstones, dedupe records, tickets) built from it.
//
// Two implementations satisfy it: the bbolt store (OpenBolt, the real one, never NoSync) and
// the in-memory store (NewMemStore, for fast tests). Both pass storeContractTests.
type Store interface {
	// Groups lists the groups this store holds a copy of.
	Groups() ([]command.ServerID, error)
	// Group opens the copy of group g, creating an empty one if needed.
	Group(g command.ServerID) (GroupStore, error)
	// DropGroup deletes the copy of group g entirely.
	DropGroup(g command.ServerID) error
	Close() error
}

// Meta is the per-group metadata.
type Meta struct {
	// Epoch is the highest epoch this copy has adopted; it never decreases.
	Epoch uint64
	// LastEpoch and LastSeq name the last log entry (0,0 for an empty log).
	LastEpoch uint64
	LastSeq   uint64
	// FirstSeq is the first seq still in the log (the compaction horizon + 1); 1 when
	// nothing was compacted. An empty, never-written log has FirstSeq 1, LastSeq 0.
	FirstSeq uint64
	// CommitSeq is the highest seq known committed; Applied the highest seq applied to the
	// committed layer. Applied <= CommitSeq <= LastSeq.
	CommitSeq uint64
	Applied   uint64
	// CopyID is made when the copy is first written and identifies this copy's disk.
	CopyID string
	// EpochHistory: epoch -> first seq written in it, ascending by epoch.
	EpochHistory []sibling.EpochStart
	// Resyncing: the copy is being rebuilt from a snapshot and holds nothing usable; it
	// reports no position, counts in no quorum and serves nothing until it is installed.
	Resyncing bool
}

// Batch is one atomic, durable change of a group's copy. Write applies its parts in this
// order: Truncate, Append, Apply, Compact, then the meta fields. When Write returns nil, everything in
// the batch is fsynced, and so is every batch written before it.
//
// One kind of batch is the exception: one with no Epoch, Truncate or Append (it only moves
// CommitSeq, applies and compacts) may still be in flight when Write returns, and becomes
// durable with the next batch that is synced. Nothing depends on it being on disk: a copy
// promises only its epoch and its log, and a crash that loses the batch leaves a copy that
// applies the same committed entries again at boot (commit points are knowledge that a
// promotion's barrier re-establishes, docs/replication.md case 3).
type Batch struct {
	// Epoch, if above the stored one, becomes the copy's epoch.
	Epoch uint64
	// Truncate, if > 0, removes every log entry with seq >= Truncate (and epoch history
	// starts at or above it). It is an error to truncate at or below CommitSeq.
	Truncate uint64
	// Append adds entries after the last one; their seqs must be consecutive and follow
	// LastSeq (or, in an empty log, start anywhere >= FirstSeq). An entry whose epoch is
	// above LastEpoch adds an epoch history record (epoch, seq).
	Append []sibling.Entry
	// Apply lists committed effects to apply to the committed layer, in seq order; each
	// must be at Applied+1, Applied+2, ...; the last becomes the new Applied.
	Apply []AppliedEffect
	// ApplyFromLog promises that each effect in Apply is the one its seq's log entry
	// encodes (command.DecodeEffect of the entry's data), as when a copy applies its own
	// log. The durable store then logs the applied seqs instead of their changes, and a
	// boot derives the changes from the entries (walrec.go); the memory store checks the
	// promise and refuses a batch that breaks it.
	ApplyFromLog bool
	// CommitSeq, if above the stored one, becomes CommitSeq.
	CommitSeq uint64
	// Compact, if at or above FirstSeq, removes every log entry with seq <= Compact and
	// makes FirstSeq Compact+1 (after Apply; it must not pass Applied). The epoch history
	// is kept, so the copy still knows the epoch of every seq it held.
	Compact uint64
}

// needsSync reports whether Write must return only once the batch is on disk.
func (b *Batch) needsSync() bool {
	return b.Epoch != 0 || b.Truncate != 0 || len(b.Append) > 0
}

// AppliedEffect is a committed entry's effect, decoded. Epoch is the entry's epoch (the
// store does not need it; subscribers do).
type AppliedEffect struct {
	Epoch  uint64
	Seq    uint64
	Effect command.Effect
}

// GroupStore is one group's copy.
type GroupStore interface {
	Meta() (Meta, error)
	Write(b *Batch) error
	// Entries returns log entries with from <= seq <= to, stopping early after maxBytes of
	// entry data (always at least one entry when any is in range).
	Entries(from, to uint64, maxBytes int) ([]sibling.Entry, error)
	// Resource returns the committed state of rid: the live resource, or (nil, tombstone),
	// or (nil, nil) if unknown.
	Resource(rid string) (*command.Resource, *command.Tombstone, error)
	// Dedupe returns the committed record under key, or nil.
	Dedupe(key string) (*command.DedupeRecord, error)
	// List returns up to limit live resources with rid > after (byte order), of type typ
	// when typ != "", ascending by rid.
	List(typ, after string, limit int) ([]command.Resource, error)
	// Ticket returns the committed ticket state of rid (the zero state if it never had one).
	Ticket(rid string) (command.TicketState, error)
	// LiveTickets returns every committed live ticket, ascending by rid.
	LiveTickets() ([]LiveTicket, error)

	// Reset makes the copy a new, empty one in one transaction: everything goes, a new copy
	// ID is made, and the epoch is set to epoch (the node's promise never to follow an
	// older main outlives the data).
	Reset(epoch uint64) error
	// Snapshot opens a consistent read of the committed layer (store_snapshot.go).
	Snapshot(id uint64) (*Snapshot, error)
	// BeginResync, WriteResync and FinishResync rebuild the copy from a snapshot; they are
	// the resync.Sink of the copy.
	BeginResync(h resync.Header) (resync.Position, error)
	WriteResync(recs []resync.Record) error
	FinishResync(h resync.Header) error
}
