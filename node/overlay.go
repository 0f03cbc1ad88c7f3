package node

import (
	"github.com/sibylhq/sibyl/command"
)

// overlay is the main's pending layer: the state after every entry it has assigned but not
// yet applied. Only execution sees it; reads, events and duplicate answers use the
// committed layer (REPLICATION.md case 4).
type overlay struct {
	gs        GroupStore
	resources map[string]pendingRes
	keys      map[string]*command.DedupeRecord
	tickets   map[string]pendingTicket // see overlay_tickets.go
}

type pendingRes struct {
	seq  uint64
	res  *command.Resource // nil: deleted
	tomb *command.Tombstone
}

func newOverlay(gs GroupStore) *overlay {
	return &overlay{gs: gs, resources: map[string]pendingRes{}, keys: map[string]*command.DedupeRecord{},
		tickets: map[string]pendingTicket{}}
}

func (o *overlay) Resource(rid string) (*command.Resource, bool, error) {
	if p, ok := o.resources[rid]; ok {
		return p.res, p.res == nil, nil
	}
	res, tomb, err := o.gs.Resource(rid)
	return res, tomb != nil, err
}

func (o *overlay) Dedupe(key string) (*command.DedupeRecord, error) {
	if r, ok := o.keys[key]; ok {
		return r, nil
	}
	return o.gs.Dedupe(key)
}

// add layers the effect of the entry at seq.
func (o *overlay) add(seq uint64, e *command.Effect) {
	switch e.Kind {
	case command.EffectPut:
		o.resources[e.RID] = pendingRes{seq: seq, res: e.Resource}
	case command.EffectDelete:
		o.resources[e.RID] = pendingRes{seq: seq, tomb: &command.Tombstone{RID: e.RID, Version: e.Version, At: e.At}}
	}
	if e.Dedupe != nil {
		o.keys[e.Dedupe.Key] = e.Dedupe
	}
	if e.Ticket != nil {
		o.tickets[e.RID] = pendingTicket{seq: seq, st: *e.Ticket}
	}
}

// applied drops what the committed layer now shows, up to seq.
func (o *overlay) applied(seq uint64) {
	for rid, p := range o.resources {
		if p.seq <= seq {
			delete(o.resources, rid)
		}
	}
	for k, r := range o.keys {
		if r.Seq <= seq {
			delete(o.keys, k)
		}
	}
	for rid, p := range o.tickets {
		if p.seq <= seq {
			delete(o.tickets, rid)
		}
	}
}
