package command

import "time"

// View is the state a command executes against: on the main, the committed layer with the
// pending overlay on top.
type View interface {
	// Resource returns the live resource rid, or (nil, tombstoned, nil) when it does not
	// exist (tombstoned tells whether it existed and was deleted).
	Resource(rid string) (res *Resource, tombstoned bool, err error)
	// Dedupe returns the record stored under key in this group, or nil.
	Dedupe(key string) (*DedupeRecord, error)
}

// ExecContext is what the main supplies to one execution.
type ExecContext struct {
	Group ServerID
	Epoch uint64
	Seq   uint64
	Now   time.Time
	// NewID makes the ULID part of a created resource's rid.
	NewID func() RID
}

// Outcome of Execute. Exactly one of these holds:
//   - Err != nil: the command is refused and changes nothing.
//   - Duplicate != nil: the key was seen; reply with the stored result (after the entry at
//     Duplicate.Seq commits) and append nothing.
//   - Effect != nil: append Effect at ctx.Seq; Reply is the answer once it commits.
type Outcome struct {
	Effect    *Effect
	Reply     *Reply
	Duplicate *DedupeRecord
	Err       *Error
}
