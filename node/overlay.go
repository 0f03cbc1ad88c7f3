package node

import (
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// Overlay is the main's pending layer: the state after every entry it has assigned but not
// yet applied, over a GroupStore's committed layer. It is the command.View a main executes
// against. Only execution sees it; reads, events and duplicate answers use the committed
// layer (docs/replication.md case 4).
type Overlay struct {
	gs        store.GroupStore
	resources map[string]pendingRes
	keys      map[string]*command.DedupeRecord
	tickets   map[string]pendingTicket // see overlay_tickets.go
}

type pendingRes struct {
	seq  uint64
	res  *command.Resource // nil: deleted
	tomb *command.Tombstone
}

// NewOverlay starts an empty pending layer over gs.
func NewOverlay(gs store.GroupStore) *Overlay {
	return &Overlay{gs: gs, resources: map[string]pendingRes{}, keys: map[string]*command.DedupeRecord{},
		tickets: map[string]pendingTicket{}}
}

func (o *Overlay) Resource(rid string) (*command.Resource, bool, error) {
	if p, ok := o.resources[rid]; ok {
		return p.res, p.res == nil, nil
	}
	res, tomb, err := o.gs.Resource(rid)
	return res, tomb != nil, err
}

func (o *Overlay) Dedupe(key string) (*command.DedupeRecord, error) {
	if r, ok := o.keys[key]; ok {
		return r, nil
	}
	return o.gs.Dedupe(key)
}

// Add layers the effect of the entry at seq.
func (o *Overlay) Add(seq uint64, e *command.Effect) {
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

// Applied drops what the committed layer now shows, up to seq.
func (o *Overlay) Applied(seq uint64) {
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
