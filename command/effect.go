package command

import "time"

// EffectKind says what a log entry does to the committed state of a group.
type EffectKind uint8

const (
	// EffectPut stores Resource as the new state of RID (create, update, patch).
	EffectPut EffectKind = iota + 1
	// EffectDelete replaces RID by a tombstone.
	EffectDelete
	// EffectBarrier is a new main's first entry of its epoch; it changes no resource.
	EffectBarrier
	// EffectConfig marks the first entry under a new group configuration.
	EffectConfig
	// EffectNoop changes nothing (used to commit older entries).
	EffectNoop
	// EffectTicket stores Ticket as the new ticket state of RID (acquire, renew, release,
	// and the main's expiry); the resource itself does not change.
	EffectTicket
	// EffectVacuum drops old tombstones and dedupe records (Vacuum says which). It is a
	// log entry so that every copy drops the same records at the same position.
	EffectVacuum
)

// Effect is the deterministic result of executing one command: what every copy applies,
// in seq order, once the entry is committed. Copies never re-execute commands.
type Effect struct {
	Kind     EffectKind `json:"k"`
	RID      string     `json:"rid,omitempty"`
	Resource *Resource  `json:"res,omitempty"`
	// Version of the deleted resource's tombstone (EffectDelete).
	Version uint64 `json:"v,omitempty"`
	// Type of the deleted resource (EffectDelete), or of the resource whose ticket changes
	// (EffectTicket). The committed layer forgets it with the resource, and a `type`
	// subscription needs it to match the delete or the ticket event without a lookup.
	Type string `json:"type,omitempty"`
	// At is the main's wall time at execution (informational; never compared across nodes).
	At time.Time `json:"at,omitempty"`
	// Dedupe is set for keyed writes: the record stored under the key.
	Dedupe *DedupeRecord `json:"dd,omitempty"`
	// Config is the config version an EffectConfig entry starts.
	Config uint64 `json:"cfg,omitempty"`
	// Ticket is RID's ticket state after the entry (EffectTicket; on EffectDelete, the end
	// of the ticket that was live on the deleted resource).
	Ticket *TicketState `json:"tk,omitempty"`
	// Vacuum says what an EffectVacuum entry drops.
	Vacuum *Vacuum `json:"vac,omitempty"`
}

// Vacuum is what one vacuum entry drops from the committed layer: tombstones of deletes at
// or below seq Tombstones, and dedupe records of entries at or below seq Dedupe. Bounds are
// seqs, not times, so every copy drops the same records whatever its clock. The main picks
// them by its own monotonic clock: a seq is old enough once the main has seen it for the
// retention (a new main counts inherited entries from its promotion), and tombstones go
// only for deletes every copy it replicates to holds.
type Vacuum struct {
	Tombstones uint64 `json:"ts"`
	Dedupe     uint64 `json:"dd"`
}

// DedupeRecord is what an idempotency key maps to: the hash of the first request and its
// result, replayed with "duplicate": true for a repeat.
type DedupeRecord struct {
	Key      string    `json:"key"`
	Hash     string    `json:"hash"`
	Op       string    `json:"op"`
	Epoch    uint64    `json:"epoch"`
	Seq      uint64    `json:"seq"`
	Resource *Resource `json:"res,omitempty"`
	// Ticket is the "ticket" of the first reply to a ticket op.
	Ticket *TicketInfo `json:"tk,omitempty"`
	At     time.Time   `json:"at"`
}

// Tombstone is what remains of a deleted resource.
type Tombstone struct {
	RID     string    `json:"rid"`
	Version uint64    `json:"v"`
	At      time.Time `json:"at"`
	// Seq is the seq of the delete's log entry (vacuum drops by it).
	Seq uint64 `json:"seq,omitempty"`
}
