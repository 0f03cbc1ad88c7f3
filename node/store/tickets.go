package store

import (
	"encoding/json"
	"fmt"

	"github.com/sibylhq/sibyl/command"
)

// LiveTicket is a live ticket of a group's committed layer, as a new main re-arms it.
type LiveTicket struct {
	RID    string
	Ticket command.TicketState
}

// ticketStoreOp stores the ticket state an effect leaves on its rid. The record is kept
// when the ticket ends (released, expired, deleted with its resource): it holds the fence
// counter, and fences must never go backwards.
func ticketStoreOp(e *command.Effect) (storeOp, error) {
	t := e.Ticket
	if e.RID == "" {
		return storeOp{}, fmt.Errorf("ticket state without a rid (effect kind %d)", e.Kind)
	}
	if err := checkKey("rid", e.RID); err != nil {
		return storeOp{}, err
	}
	if t.Fence == 0 || t.Live != (t.TTLMs > 0) {
		return storeOp{}, fmt.Errorf("ticket state of rid %q is malformed (fence %d, live %t, ttlMs %d)",
			e.RID, t.Fence, t.Live, t.TTLMs)
	}
	v, err := json.Marshal(t)
	if err != nil {
		return storeOp{}, fmt.Errorf("encode ticket of rid %q: %w", e.RID, err)
	}
	return storeOp{bucket: bucketTickets, key: e.RID, val: v}, nil
}

func decodeTicket(rid, v []byte) (command.TicketState, error) {
	var t command.TicketState
	if err := json.Unmarshal(v, &t); err != nil {
		return t, fmt.Errorf("decode ticket of rid %q: %w", rid, err)
	}
	return t, nil
}

// Ticket returns the committed ticket state of rid: its fence counter and whether that
// fence's ticket is live. A rid that never had a ticket gets the zero state.
func (s *groupStore) Ticket(rid string) (command.TicketState, error) {
	var t command.TicketState
	err := s.txns.view(func(bk *groupBuckets) error {
		v := bk.tickets.get([]byte(rid))
		if v == nil {
			return nil
		}
		var err error
		t, err = decodeTicket([]byte(rid), v)
		return err
	})
	if err != nil {
		return command.TicketState{}, s.wrap(err)
	}
	return t, nil
}

// LiveTickets returns every live ticket of the committed layer, ascending by rid. It scans
// the whole bucket (ended tickets stay for their fence counters); only a new main calls
// it, once, to re-arm what it inherits.
func (s *groupStore) LiveTickets() ([]LiveTicket, error) {
	var out []LiveTicket
	err := s.txns.view(func(bk *groupBuckets) error {
		return bk.tickets.each(nil, func(k, v []byte) (bool, error) {
			t, err := decodeTicket(k, v)
			if err != nil {
				return false, err
			}
			if t.Live {
				out = append(out, LiveTicket{RID: string(k), Ticket: t})
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	return out, nil
}
