package command

import (
	"encoding/json"
	"time"
)

// View is the state a command executes against: on the main, the committed layer with the
// pending overlay on top.
type View interface {
	// Resource returns the live resource rid, or (nil, tombstoned, nil) when it does not
	// exist (tombstoned tells whether it existed and was deleted).
	Resource(rid string) (res *Resource, tombstoned bool, err error)
	// Dedupe returns the record stored under key in this group, or nil.
	Dedupe(key string) (*DedupeRecord, error)
	// Ticket returns rid's ticket state (the zero state when no ticket was ever granted).
	Ticket(rid string) (TicketState, error)
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

// Reply is the answer to a repeat of the keyed write that stored d.
func (d *DedupeRecord) Reply() *Reply {
	return &Reply{Resource: d.Resource, Ticket: d.Ticket, Epoch: d.Epoch, Seq: d.Seq, Duplicate: true}
}

// Execute runs one write (create, update, patch, delete, or a ticket op: see
// executeTicket) against v and returns the effect to append at ctx.Seq. It is
// deterministic: the same view, request and context give the same outcome on any node,
// which is what lets copies apply effects instead of executing commands.
//
// The checks run in the order of docs/replication.md case 9: validation; the idempotency key
// (a repeat is answered from its record before anything about the resource can fail, so a
// retry of a write that succeeded never reports not_found, ticket_held or conflict); then
// the existence of the resource, its ticket, and ifVersion. Existence comes first among
// those: on a deleted or unknown rid no ticket can be live, and not_found is the answer
// no retry can change.
func Execute(v View, req *Request, ctx ExecContext) Outcome {
	if err := ValidateRequest(req); err != nil {
		return fail(err)
	}
	switch req.Op {
	case OpCreate, OpUpdate, OpPatch, OpDelete, OpAcquireTicket, OpRenewTicket, OpReleaseTicket:
	default:
		return fail(Errorf(CodeBadRequest, "op %q is not a resource write", req.Op))
	}
	if err := checkGroup(req, ctx.Group); err != nil {
		return fail(err)
	}
	if err := checkScope(v, req); err != nil {
		return fail(err)
	}

	var hash string
	if req.Key != "" {
		hash = RequestHash(req)
		rec, err := v.Dedupe(req.Key)
		if err != nil {
			return fail(Errorf(CodeInternal, "reading key %q: %v", req.Key, err))
		}
		if rec != nil {
			if rec.Hash == hash && rec.Op == req.Op {
				return Outcome{Duplicate: rec}
			}
			return fail(Errorf(CodeConflict, "key %q was used for a different %s request (epoch %d, seq %d)",
				req.Key, rec.Op, rec.Epoch, rec.Seq))
		}
	}

	now := ctx.Now.UTC()
	if isTicketOp(req.Op) {
		return executeTicket(v, req, ctx, hash, now)
	}
	eff := &Effect{Kind: EffectPut, At: now}
	if req.Op == OpCreate {
		if ctx.NewID == nil {
			return fail(Errorf(CodeInternal, "no ID generator for group %d", ctx.Group))
		}
		rid := RID{Server: ctx.Group, ID: ctx.NewID().ID}
		eff.RID = rid.String()
		eff.Resource = &Resource{ID: eff.RID, Type: req.Type, Version: 1,
			Data: compactOrRaw(req.Data), Created: now, Updated: now}
	} else {
		cur, tk, err := current(v, req)
		if err != nil {
			return fail(err)
		}
		eff.RID = req.RID
		switch req.Op {
		case OpUpdate:
			eff.Resource = next(cur, compactOrRaw(req.Data), now)
		case OpPatch:
			data, err := MergePatch(cur.Data, req.Patch)
			if err != nil {
				return fail(AsError(err))
			}
			eff.Resource = next(cur, data, now)
		case OpDelete:
			// The tombstone takes the next version, so that a resource's version grows by
			// exactly one per created, updated and deleted event.
			eff.Kind, eff.Version, eff.Type = EffectDelete, cur.Version+1, cur.Type
			if tk.Live {
				// The ticket ends with its resource; the fence counter stays.
				eff.Ticket = &TicketState{Fence: tk.Fence}
			}
		}
	}

	if req.Key != "" {
		eff.Dedupe = &DedupeRecord{Key: req.Key, Hash: hash, Op: req.Op, Epoch: ctx.Epoch, Seq: ctx.Seq,
			Resource: eff.Resource, At: now}
	}
	return Outcome{Effect: eff, Reply: &Reply{Resource: eff.Resource, Epoch: ctx.Epoch, Seq: ctx.Seq}}
}

func fail(err *Error) Outcome { return Outcome{Err: err} }

// checkGroup refuses a write meant for another group: keys, versions and seqs are all per
// group, so executing it here would be wrong even if the resource were found.
func checkGroup(req *Request, group ServerID) *Error {
	if req.Op == OpCreate {
		if req.Server != nil && *req.Server != int64(group) {
			return Errorf(CodeBadRequest, "server %d is not this group (%d)", *req.Server, group)
		}
		return nil
	}
	g, err := GroupOf(req.RID)
	if err != nil {
		return AsError(err)
	}
	if g != group {
		return Errorf(CodeBadRequest, "rid %q belongs to group %d, not %d", req.RID, g, group)
	}
	return nil
}

// checkScope refuses a write whose caller's role does not grant it on the resource's
// type (docs/protocol.md §7), before the key is looked up, so that a repeat of someone
// else's keyed write reveals nothing either. The type is the create's, else the live
// resource's, else that of the resource a keyed first write stored; a rid that names
// nothing of either passes, and the usual checks answer not_found.
func checkScope(v View, req *Request) *Error {
	if req.Scope == nil {
		return nil
	}
	typ := req.Type
	if req.Op != OpCreate {
		cur, _, err := v.Resource(req.RID)
		if err != nil {
			return Errorf(CodeInternal, "reading rid %q: %v", req.RID, err)
		}
		typ = ""
		if cur != nil {
			typ = cur.Type
		} else if req.Key != "" {
			rec, err := v.Dedupe(req.Key)
			if err != nil {
				return Errorf(CodeInternal, "reading key %q: %v", req.Key, err)
			}
			if rec != nil && rec.Resource != nil {
				typ = rec.Resource.Type
			}
		}
		if typ == "" {
			return nil
		}
	}
	if !TypeAllowed(req.Scope, typ) {
		return Errorf(CodeForbidden, "this token's role does not grant %s on type %q", OpKind(req.Op), typ)
	}
	return nil
}

// current returns the resource a write to an existing rid applies to, and its ticket
// state, after the checks that follow the key: existence, ticket, ifVersion.
func current(v View, req *Request) (*Resource, TicketState, *Error) {
	cur, tombstoned, err := v.Resource(req.RID)
	if err != nil {
		return nil, TicketState{}, Errorf(CodeInternal, "reading rid %q: %v", req.RID, err)
	}
	// docs/protocol.md §2: writing to a deleted or unknown rid gives not_found, whatever ifVersion
	// or ticket say: no ticket can be live on a resource that does not exist, and the
	// caller learns the one fact that no retry can change.
	if cur == nil {
		return nil, TicketState{}, Errorf(CodeNotFound, "rid %q %s", req.RID, missing(tombstoned))
	}
	// The ticket comes after the key lookup (a retry whose fence has since expired gets its
	// duplicate, not ticket_held: docs/replication.md case 9) and before ifVersion.
	tk, err := v.Ticket(req.RID)
	if err != nil {
		return nil, TicketState{}, Errorf(CodeInternal, "reading the ticket of rid %q: %v", req.RID, err)
	}
	if terr := checkWriteTicket(req, tk); terr != nil {
		return nil, TicketState{}, terr
	}
	if req.IfVersion != nil && cur.Version != *req.IfVersion {
		return nil, TicketState{}, Errorf(CodeConflict, "ifVersion %d does not match version %d of rid %q",
			*req.IfVersion, cur.Version, req.RID)
	}
	return cur, tk, nil
}

func missing(tombstoned bool) string {
	if tombstoned {
		return "was deleted"
	}
	return "does not exist"
}

// next is cur's successor holding data.
func next(cur *Resource, data json.RawMessage, now time.Time) *Resource {
	return &Resource{ID: cur.ID, Type: cur.Type, Version: cur.Version + 1, Data: data,
		Created: cur.Created, Updated: now}
}
