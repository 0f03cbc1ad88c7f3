package location

import (
	"encoding/json"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Ticket clients and the holder rule (docs/replication.md case 8, invariant 12). Both contend for
// one resource; the first creates it. A client believes it holds fence f from the moment
// the grant reaches it until sendTime + ttl·(1−ρ) on its own monotonic clock, sendTime
// being its first attempt of the acquire (or of the last acknowledged renew); a release
// ends the belief when it is sent. Two clients' beliefs on one resource must never overlap
// in real time.

type belief struct {
	client      int
	fence       uint64
	from, until time.Duration
}

const simTicketMargin = 5 * time.Millisecond // a holder stops using a ticket this long before its belief ends

func (c *simChecker) nextTicketRequest(cl *simClient) bool {
	s := c.s
	if c.ticketRID == "" {
		// The first ticket client creates the resource; the oracle learns its rid when the
		// create commits.
		if cl != c.clients[len(c.clients)-simTicketUsers] {
			return false
		}
		srv := int64(simGroup)
		cl.req = &command.Request{Op: command.OpCreate, Type: "lock", Data: json.RawMessage(`{"t":0}`), Server: &srv, Key: c.newKey()}
		return true
	}
	if cl.fence != 0 && s.now+simTicketMargin >= cl.until {
		cl.fence = 0 // its belief ran out
	}
	// Short leases come and go between promotions; long ones outlive a promotion (a
	// detection takes down-after), so a new main inherits them.
	ttl := int64(20 + s.rng.Intn(40))
	if s.rng.Intn(2) == 0 {
		ttl = int64(150 + s.rng.Intn(250))
	}
	req := &command.Request{RID: c.ticketRID, Key: c.newKey()}
	if cl.fence == 0 {
		req.Op, req.TTLMs = command.OpAcquireTicket, &ttl
	} else {
		f := cl.fence
		req.Ticket = &f
		switch r := s.rng.Intn(20); {
		case r < 12:
			req.Op, req.Data = command.OpUpdate, json.RawMessage(`{"t":`+jsonUint(f)+`}`)
		case r < 17:
			// As api/client's Renew: while the renewal may be applied, the lease counts only
			// until the earlier of its old end and the new one.
			req.Op, req.TTLMs = command.OpRenewTicket, &ttl
			b := c.currentBelief(cl)
			b.until = min(b.until, cl.realAt(cl.now(s)+leaseOf(ttl)))
			cl.until = b.until
		default:
			req.Op = command.OpReleaseTicket
			c.endBelief(cl, s.now) // it stops believing as it sends the release
		}
	}
	cl.req = req
	return true
}

// leaseOf is how long a holder counts on a ticket of ttl ms from when it sent the request,
// on its own clock: ttl·(1−ρ).
func leaseOf(ttlMs int64) time.Duration {
	return time.Duration(float64(time.Duration(ttlMs)*time.Millisecond) * (1 - simRho))
}

func jsonUint(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ticketAnswered follows an answer to a ticket client.
func (c *simChecker) ticketAnswered(cl *simClient, w pendingWrite) {
	s, req := c.s, cl.req
	if req.Op == command.OpCreate {
		return
	}
	if w.err != nil {
		if w.err.Code == command.CodeTicketHeld {
			c.endBelief(cl, s.now)
		}
		return
	}
	switch req.Op {
	case command.OpAcquireTicket, command.OpRenewTicket:
		if w.reply.Ticket == nil {
			s.fatalf("client %d: %s answered without a ticket", cl.id, req.Op)
		}
		until := cl.realAt(cl.mono + leaseOf(*req.TTLMs))
		if s.now >= until {
			return // the grant came too late to be of use
		}
		if req.Op == command.OpAcquireTicket || cl.fence != w.reply.Ticket.Fence {
			cl.fence = w.reply.Ticket.Fence
			c.beliefs = append(c.beliefs, belief{client: cl.id, fence: cl.fence, from: s.now, until: until})
			s.stats.tickets++
		} else {
			c.currentBelief(cl).until = until
		}
		cl.until = c.currentBelief(cl).until
		s.tracef("client %d: %s answered, fence %d; sent at %v (its mono %v), believed until %v", cl.id, req.Op, cl.fence, cl.sent, cl.mono, cl.until)
		c.holderCheck(c.currentBelief(cl))
	}
}

func (c *simChecker) currentBelief(cl *simClient) *belief {
	for i := len(c.beliefs) - 1; i >= 0; i-- {
		if c.beliefs[i].client == cl.id {
			return &c.beliefs[i]
		}
	}
	return &belief{}
}

func (c *simChecker) endBelief(cl *simClient, at time.Duration) {
	if cl.fence != 0 {
		b := c.currentBelief(cl)
		b.until = min(b.until, at)
	}
	cl.fence = 0
}

// holderCheck: no two clients believe they hold the ticket at once (invariant 12).
func (c *simChecker) holderCheck(b *belief) {
	for _, o := range c.beliefs {
		if o.client != b.client && o.from < b.until && b.from < o.until {
			c.s.fatalf("client %d believes it holds fence %d over [%v, %v] and client %d fence %d over [%v, %v] (invariant 12)",
				b.client, b.fence, b.from, b.until, o.client, o.fence, o.from, o.until)
		}
	}
}

// ticketFold checks a committed effect against the ticket state before it (invariant 12):
// fences only grow, a new fence is granted only when none is live and is one more than the
// last, and a write carrying a fence commits only while that fence is live (one carrying
// none, only while none is).
func (c *simChecker) ticketFold(q uint64, eff *command.Effect, prev command.TicketState, o *origin) {
	s := c.s
	if t := eff.Ticket; t != nil {
		if t.Fence < prev.Fence {
			s.fatalf("seq %d moves the fence of %s back from %d to %d (invariant 12)", q, eff.RID, prev.Fence, t.Fence)
		}
		if t.Fence > prev.Fence && (prev.Live || t.Fence != prev.Fence+1) {
			s.fatalf("seq %d grants fence %d on %s after %+v (invariant 12)", q, t.Fence, eff.RID, prev)
		}
	}
	if eff.Kind != command.EffectPut && eff.Kind != command.EffectDelete {
		return
	}
	var fence *uint64
	if o != nil {
		fence = o.req.Ticket
	}
	switch {
	case fence != nil && (!prev.Live || prev.Fence != *fence):
		s.fatalf("seq %d commits a write on %s with fence %d while the ticket is %+v (invariant 12)", q, eff.RID, *fence, prev)
	case fence == nil && prev.Live:
		s.fatalf("seq %d commits a write on %s without a fence while fence %d is live (invariant 12)", q, eff.RID, prev.Fence)
	}
}
