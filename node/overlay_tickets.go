package node

import (
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// pendingTicket is a ticket state an unapplied entry leaves: the main executes acquires,
// renewals, releases and fenced writes against it, so that two acquires in flight never
// both see the ticket free (docs/replication.md case 4: execution sees the pending layer).
type pendingTicket struct {
	seq uint64
	st  command.TicketState
}

// Ticket is rid's ticket state after every entry the main has assigned.
func (o *Overlay) Ticket(rid string) (command.TicketState, error) {
	if p, ok := o.tickets[rid]; ok {
		return p.st, nil
	}
	return o.gs.Ticket(rid)
}

// LiveTickets is every live ticket after the pending entries: the committed ones, as the
// pending layer changes them. A new main re-arms all of them.
func (o *Overlay) LiveTickets() ([]store.LiveTicket, error) {
	committed, err := o.gs.LiveTickets()
	if err != nil {
		return nil, err
	}
	var out []store.LiveTicket
	for _, lt := range committed {
		if _, pending := o.tickets[lt.RID]; !pending {
			out = append(out, lt)
		}
	}
	for rid, p := range o.tickets {
		if p.st.Live {
			out = append(out, store.LiveTicket{RID: rid, Ticket: p.st})
		}
	}
	return out, nil
}
