package api

import (
	"encoding/json"

	"github.com/sibylhq/sibyl/command"
)

// wireReply is a reply as sent: on the WebSocket with an id (raw, so that it can be the
// JSON null of an unreadable frame), over REST without one. Optional numbers are pointers
// because the protocol table says per op which fields are present, zero or not.
type wireReply struct {
	ID        json.RawMessage     `json:"id,omitempty"`
	OK        bool                `json:"ok"`
	Error     *command.Error      `json:"error,omitempty"`
	Resource  *command.Resource   `json:"resource,omitempty"`
	Resources *[]command.Resource `json:"resources,omitempty"`
	Next      string              `json:"next,omitempty"`
	Epoch     *uint64             `json:"epoch,omitempty"`
	Seq       *uint64             `json:"seq,omitempty"`
	Duplicate bool                `json:"duplicate,omitempty"`
	Ticket    *command.TicketInfo `json:"ticket,omitempty"`
	Token     *string             `json:"token,omitempty"`
	Status    *command.Status     `json:"status,omitempty"`
	Roles     *[]command.Role     `json:"roles,omitempty"`
}

// restError is the body of a failed REST call: {"error":{...}} as on the WebSocket.
type restError struct {
	Error *command.Error `json:"error"`
}

// nullID is the id of a reply to a frame whose id could not be read.
var nullID = json.RawMessage("null")

// rawID encodes a frame id for a reply.
func rawID(id *string) json.RawMessage {
	if id == nil {
		return nullID
	}
	b, err := json.Marshal(*id)
	if err != nil { // cannot happen for a string; keep the reply well-formed anyway
		return nullID
	}
	return b
}

// shapeReply picks the fields op defines in docs/protocol.md §2 out of rep (nil counts as an
// empty reply). Ops without output fields (hello, unsubscribe, admin ops) send only ok.
func shapeReply(op string, rep *command.Reply) *wireReply {
	w := &wireReply{OK: true}
	if rep == nil {
		rep = &command.Reply{}
	}
	switch op {
	case command.OpCreate, command.OpUpdate, command.OpPatch:
		w.Resource = rep.Resource
		w.Epoch, w.Seq = ptr(rep.Epoch), ptr(rep.Seq)
		w.Duplicate = rep.Duplicate
	case command.OpDelete:
		w.Epoch, w.Seq = ptr(rep.Epoch), ptr(rep.Seq)
		w.Duplicate = rep.Duplicate
	case command.OpGet:
		w.Resource = rep.Resource
		w.Seq = ptr(rep.Seq)
	case command.OpList:
		resources := rep.Resources
		if resources == nil {
			resources = []command.Resource{} // "resources" is always an array, never null
		}
		w.Resources = &resources
		w.Next = rep.Next
	case command.OpSubscribe:
		w.Token = ptr(rep.Token)
	case command.OpUnsubscribe:
		// Extra: the token of the last event sent, to continue from later.
		if rep.Token != "" {
			w.Token = ptr(rep.Token)
		}
	case command.OpAcquireTicket, command.OpRenewTicket, command.OpReleaseTicket:
		// releaseTicket defines no output; a ticket the backend still reports is an extra.
		w.Ticket = rep.Ticket
		w.Duplicate = rep.Duplicate
	case command.OpStatus:
		w.Status = normalizeStatus(rep.Status)
	case command.OpCreateToken:
		w.Token = ptr(rep.Token)
	case command.OpListRoles:
		roles := nonNil(rep.Roles)
		w.Roles = &roles
	}
	return w
}

func ptr[T any](v T) *T { return &v }

// normalizeStatus makes every list of the status object an array, never null, since the
// status page and clients iterate over them.
func normalizeStatus(st *command.Status) *command.Status {
	out := command.Status{}
	if st != nil {
		out = *st
	}
	// Copies, so that the backend's status object is never changed.
	out.Controllers = nonNil(out.Controllers)
	out.Nodes = nonNil(out.Nodes)
	out.Promotions = nonNil(out.Promotions)
	out.Operations = nonNil(out.Operations)
	groups := make([]command.StatusGroup, len(out.Groups))
	for i, g := range out.Groups {
		g.Siblings = nonNil(g.Siblings)
		groups[i] = g
	}
	out.Groups = groups
	locations := make([]command.StatusLocation, len(out.Locations))
	for i, l := range out.Locations {
		l.Controllers = nonNil(l.Controllers)
		locations[i] = l
	}
	out.Locations = locations
	return &out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
