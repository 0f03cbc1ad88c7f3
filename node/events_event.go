package node

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// eventKind is what a committed entry means to subscribers.
type eventKind uint8

const (
	// evInternal is a barrier, config or noop entry: no event, but it is a position.
	evInternal eventKind = iota
	evCreated
	evUpdated
	evDeleted
	// evTicket: the resource's ticket changed (acquire, renew, release, expiry).
	evTicket
)

var eventNames = [...]string{"internal", "created", "updated", "deleted", "ticket"}

// entryView is one committed entry as the fan-out looks at it, without allocating: the hub
// builds an event from it only when some subscription matches.
type entryView struct {
	pos     position
	kind    eventKind
	rid     string
	typ     string
	version uint64
	res     *command.Resource   // entries of this node's copy
	resJSON json.RawMessage     // entries from an upstream feed (already encoded)
	ticket  *command.TicketInfo // evTicket: the live ticket, nil when none is
}

// viewOf reads an applied effect. A delete written before effects carried the type
// matches no `type` subscription (it still reaches rid and server subscriptions). A delete
// also ends the resource's ticket; its one event is `deleted` (two events at one position
// could not both be resumed after).
func viewOf(a *store.AppliedEffect) entryView {
	v := entryView{pos: position{Epoch: a.Epoch, Seq: a.Seq}}
	e := &a.Effect
	switch e.Kind {
	case command.EffectPut:
		if e.Resource == nil {
			return v
		}
		v.kind, v.rid, v.typ, v.version, v.res = evUpdated, e.RID, e.Resource.Type, e.Resource.Version, e.Resource
		if e.Resource.Version == 1 {
			v.kind = evCreated
		}
	case command.EffectDelete:
		v.kind, v.rid, v.typ, v.version = evDeleted, e.RID, e.Type, e.Version
	case command.EffectTicket:
		if rid, info, ok := e.TicketChange(); ok {
			v.kind, v.rid, v.typ, v.ticket = evTicket, rid, e.Type, info
		}
	}
	return v
}

// event is one committed entry shared by every subscription it reaches. Its JSON is made
// once, by whichever connection sends it first, off the group's lock.
type event struct {
	group command.ServerID
	entryView
	at time.Time // when the hub published it: the start of commit-to-delivery latency

	once sync.Once
	core []byte // `"event":...,"epoch":E,"seq":S` without braces, sub or token
	res  []byte // the resource's JSON (puts)
}

func newEvent(g command.ServerID, v *entryView, at time.Time) *event {
	return &event{group: g, entryView: *v, at: at}
}

func (ev *event) encode() {
	ev.once.Do(func() {
		if ev.kind == evCreated || ev.kind == evUpdated {
			ev.res = ev.resJSON
			if ev.res == nil && ev.entryView.res != nil {
				b, err := json.Marshal(ev.entryView.res)
				if err != nil {
					b = []byte("null") // a committed resource always encodes; keep the frame valid
				}
				ev.res = b
			}
		}
		b := make([]byte, 0, 96+len(ev.res))
		b = append(b, `"event":"`...)
		b = append(b, eventNames[ev.kind]...)
		b = append(b, `","rid":`...)
		b = appendJSONString(b, ev.rid)
		switch ev.kind {
		case evTicket:
			b = append(b, `,"ticket":`...)
			if ev.ticket == nil {
				b = append(b, "null"...)
			} else {
				tk, _ := json.Marshal(ev.ticket) // two integers: cannot fail
				b = append(b, tk...)
			}
		case evDeleted:
			// Extra field: the tombstone's version, so that versions grow by one per event
			// for deletes too.
			b = append(b, `,"version":`...)
			b = strconv.AppendUint(b, ev.version, 10)
		default:
			b = append(b, `,"resource":`...)
			b = append(b, ev.res...)
		}
		b = append(b, `,"epoch":`...)
		b = strconv.AppendUint(b, ev.pos.Epoch, 10)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, ev.pos.Seq, 10)
		ev.core = b
	})
}

// resourceJSON returns the encoded resource of a put (nil for other entries).
func (ev *event) resourceJSON() []byte {
	ev.encode()
	return ev.res
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(b, `""`...)
	}
	return append(b, q...)
}

// ctlKind tells queued control frames from events.
type ctlKind uint8

const (
	ctlNone ctlKind = iota
	// ctlResync is one page of a resync set.
	ctlResync
	// ctlLagged ends a subscription whose consumer fell a whole buffer behind.
	ctlLagged
	// ctlFeedResync ends a feed whose position this copy cannot continue from.
	ctlFeedResync
)

// resyncPage is one resync event: the current state of up to 1000 matching resources of
// one group.
type resyncPage struct {
	group     command.ServerID
	resources []json.RawMessage
	final     bool
	at        position // the position the set was read at
}

// qitem is one queued frame of a subscription: small, since a full buffer holds 1024.
type qitem struct {
	ev   *event
	tok  string // the token of this frame; "" for events of one-group subscriptions (made from ev)
	ctl  ctlKind
	page *resyncPage
}
