package command

import "time"

// MaxTicketTTLMs bounds ttlMs of acquireTicket and renewTicket (24 h). A ticket limits how
// long others wait for a holder that went away; a longer one is almost certainly a unit
// mistake, and the bound keeps ttl·(1+ρ) far from overflowing a time.Duration.
const MaxTicketTTLMs = 24 * 60 * 60 * 1000

// TicketState is a resource's ticket record: what the group's `tickets` bucket holds per
// resource, and what every ticket effect carries whole, so that applying one is a plain
// store of the new state.
//
// At most one ticket per resource is live, and it always holds the resource's highest
// fence: a fence is granted only when none is live, and it is one more than the last.
// So one record holds both the fence counter and the live ticket, and the counter is
// kept after the ticket is released or expires (fences never go backwards).
type TicketState struct {
	// Fence is the highest fence ever granted on the resource (0: never).
	Fence uint64 `json:"fence"`
	// Live tells whether the ticket holding Fence is live.
	Live bool `json:"live,omitempty"`
	// TTLMs is the live ticket's time to live, as its last acquire or renew asked (0 when
	// not live). It is a duration, never an instant: only the main turns it into a
	// deadline, on its own monotonic clock (docs/replication.md case 8).
	TTLMs int64 `json:"ttlMs,omitempty"`
}

// Info is the "ticket" object of replies and `ticket` events: the live ticket, or nil
// (JSON null) when none is live. expiresMs is informational: a holder counts its ttl from
// when it sent the request.
func (t TicketState) Info() *TicketInfo {
	if !t.Live {
		return nil
	}
	return &TicketInfo{Fence: t.Fence, ExpiresMs: t.TTLMs}
}

// TicketChange tells what an effect does to a ticket, for subscribers (the `ticket`
// event: rid, and the live ticket or null; e.Type is the resource's type, for `type`
// subscriptions). ok is false for effects that leave tickets alone. A delete of a
// resource that had a live ticket ends that ticket too.
func (e *Effect) TicketChange() (rid string, info *TicketInfo, ok bool) {
	if e.Ticket == nil {
		return "", nil, false
	}
	return e.RID, e.Ticket.Info(), true
}

// ExpireTicket is the effect of the main's decision that the live ticket on rid, holding
// fence, has expired, or nil when that ticket is no longer live (released, expired, or its
// resource deleted meanwhile). Deadlines, and renewals that move them, are the main's to
// keep; this only writes the decision down. Expiry is an internal entry that goes through
// the log like any write, so that every copy ends the ticket at the same seq and
// subscribers get `ticket: null` from it; copies never expire tickets themselves.
func ExpireTicket(v View, rid string, fence uint64, now time.Time) (*Effect, error) {
	tk, err := v.Ticket(rid)
	if err != nil {
		return nil, Errorf(CodeInternal, "reading the ticket of rid %q: %v", rid, err)
	}
	if !tk.Live || tk.Fence != fence {
		return nil, nil
	}
	res, _, err := v.Resource(rid)
	if err != nil {
		return nil, Errorf(CodeInternal, "reading rid %q: %v", rid, err)
	}
	if res == nil {
		// A delete ends the live ticket with its resource, so this cannot be; if it were,
		// there would be nothing left to expire.
		return nil, nil
	}
	return &Effect{Kind: EffectTicket, RID: rid, Type: res.Type, Ticket: &TicketState{Fence: fence}, At: now.UTC()}, nil
}

// isTicketOp reports whether op is one of the three ticket ops.
func isTicketOp(op string) bool {
	return op == OpAcquireTicket || op == OpRenewTicket || op == OpReleaseTicket
}

// executeTicket runs acquireTicket, renewTicket or releaseTicket after validation, the
// group check and the key lookup (Execute). The resource must exist; then:
//   - acquire: refused with ticket_held while a ticket is live, else grants the next fence;
//   - renew, release: refused with ticket_held unless req.Ticket is the live fence.
//
// Ticket ops never change the resource, so its version stays as it is. The messages of
// refusals never name the live fence: it is the holder's right to write, and a refused
// caller must not learn it from an error.
func executeTicket(v View, req *Request, ctx ExecContext, hash string, now time.Time) Outcome {
	cur, tombstoned, err := v.Resource(req.RID)
	if err != nil {
		return fail(Errorf(CodeInternal, "reading rid %q: %v", req.RID, err))
	}
	if cur == nil {
		return fail(Errorf(CodeNotFound, "rid %q %s", req.RID, missing(tombstoned)))
	}
	tk, err := v.Ticket(req.RID)
	if err != nil {
		return fail(Errorf(CodeInternal, "reading the ticket of rid %q: %v", req.RID, err))
	}
	var next TicketState
	switch req.Op {
	case OpAcquireTicket:
		if tk.Live {
			return fail(Errorf(CodeTicketHeld, "rid %q has a live ticket", req.RID))
		}
		next = TicketState{Fence: tk.Fence + 1, Live: true, TTLMs: *req.TTLMs}
	case OpRenewTicket, OpReleaseTicket:
		if !tk.Live || tk.Fence != *req.Ticket {
			return fail(Errorf(CodeTicketHeld, "%s of rid %q: fence %d is not the live ticket", req.Op, req.RID, *req.Ticket))
		}
		if req.Op == OpRenewTicket {
			next = TicketState{Fence: tk.Fence, Live: true, TTLMs: *req.TTLMs}
		} else {
			next = TicketState{Fence: tk.Fence}
		}
	}
	eff := &Effect{Kind: EffectTicket, RID: req.RID, Type: cur.Type, Ticket: &next, At: now}
	reply := &Reply{Epoch: ctx.Epoch, Seq: ctx.Seq, Ticket: next.Info()}
	if req.Key != "" {
		eff.Dedupe = &DedupeRecord{Key: req.Key, Hash: hash, Op: req.Op, Epoch: ctx.Epoch, Seq: ctx.Seq,
			Ticket: reply.Ticket, At: now}
	}
	return Outcome{Effect: eff, Reply: reply}
}

// checkWriteTicket is the ticket rule of a resource write (docs/protocol.md §2): while a
// ticket is live, the write must carry its fence; a write carrying a fence that is not
// live (released, expired, older, or none was ever granted) is refused too, since its
// writer believes it holds a ticket it does not.
func checkWriteTicket(req *Request, tk TicketState) *Error {
	switch {
	case tk.Live && req.Ticket == nil:
		return Errorf(CodeTicketHeld, "%s of rid %q: the resource has a live ticket and the write carries no fence", req.Op, req.RID)
	case req.Ticket != nil && (!tk.Live || *req.Ticket != tk.Fence):
		return Errorf(CodeTicketHeld, "%s of rid %q: fence %d is not the live ticket", req.Op, req.RID, *req.Ticket)
	}
	return nil
}

// checkTicketEffect checks the ticket part of an effect (see checkEffect): a ticket effect
// names its resource and carries a well-formed state; a delete may end a live ticket; no
// other effect touches tickets.
func checkTicketEffect(e *Effect) *Error {
	t := e.Ticket
	switch e.Kind {
	case EffectTicket:
		if err := checkEffectRID(e); err != nil {
			return err
		}
		if e.Resource != nil || e.Version != 0 {
			return Errorf(CodeInternal, "ticket effect on rid %q changes the resource", e.RID)
		}
		if checkType(e.Type) != nil {
			return Errorf(CodeInternal, "ticket effect on rid %q lacks a valid resource type (%q)", e.RID, e.Type)
		}
		if t == nil {
			return Errorf(CodeInternal, "ticket effect on rid %q carries no ticket", e.RID)
		}
	case EffectDelete:
		if t != nil && t.Live {
			return Errorf(CodeInternal, "delete of rid %q leaves a live ticket", e.RID)
		}
	default:
		if t != nil {
			return Errorf(CodeInternal, "effect of kind %d carries a ticket", e.Kind)
		}
	}
	if t == nil {
		return nil
	}
	if t.Fence == 0 || t.Live != (t.TTLMs > 0) || t.TTLMs < 0 || t.TTLMs > MaxTicketTTLMs {
		return Errorf(CodeInternal, "ticket of rid %q is malformed (fence %d, live %t, ttlMs %d)", e.RID, t.Fence, t.Live, t.TTLMs)
	}
	return nil
}
