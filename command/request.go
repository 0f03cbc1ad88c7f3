package command

import (
	"encoding/json"
	"time"
)

// Ops of the public protocol. Write ops change a resource and go through a group's log.
const (
	OpCreate        = "create"
	OpGet           = "get"
	OpUpdate        = "update"
	OpPatch         = "patch"
	OpDelete        = "delete"
	OpList          = "list"
	OpSubscribe     = "subscribe"
	OpUnsubscribe   = "unsubscribe"
	OpAcquireTicket = "acquireTicket"
	OpRenewTicket   = "renewTicket"
	OpReleaseTicket = "releaseTicket"
	OpStatus        = "status"
	OpHello         = "hello"

	OpRegisterSibling = "registerSibling"
	OpRemoveSibling   = "removeSibling"
	OpPromote         = "promote"
	OpDrain           = "drain"
	OpRemoveNode      = "removeNode"
	// OpRehome moves a group's home to Location when its home lost its controllers
	// (docs/protocol.md §6, docs/locations.md).
	OpRehome = "rehome"

	// Roles and tokens (docs/protocol.md §7). listRoles is an extra.
	OpCreateRole  = "createRole"
	OpDeleteRole  = "deleteRole"
	OpListRoles   = "listRoles"
	OpCreateToken = "createToken"
	OpRevokeToken = "revokeToken"
)

// IsAdminOp reports whether op needs an admin token (docs/protocol.md §3 and §7).
func IsAdminOp(op string) bool {
	switch op {
	case OpRegisterSibling, OpRemoveSibling, OpPromote, OpDrain, OpRemoveNode, OpRehome,
		OpCreateRole, OpDeleteRole, OpListRoles, OpCreateToken, OpRevokeToken:
		return true
	}
	return false
}

// IsWrite reports whether op changes state through a group's log.
func IsWrite(op string) bool {
	switch op {
	case OpCreate, OpUpdate, OpPatch, OpDelete, OpAcquireTicket, OpRenewTicket, OpReleaseTicket:
		return true
	}
	return false
}

// Consistency levels of a read.
const (
	Linearizable = "linearizable"
	SiblingRead  = "sibling"
)

// Request holds the fields of every op of docs/protocol.md §2 and §3 (the frame's "id" is kept
// by the API layer). Optional numbers are pointers so that "absent" differs from zero.
type Request struct {
	Op          string          `json:"op"`
	RID         string          `json:"rid,omitempty"`
	Type        string          `json:"type,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	Patch       json.RawMessage `json:"patch,omitempty"`
	Server      *int64          `json:"server,omitempty"`
	Node        *int64          `json:"node,omitempty"`
	IfVersion   *uint64         `json:"ifVersion,omitempty"`
	Key         string          `json:"key,omitempty"`
	Ticket      *uint64         `json:"ticket,omitempty"`
	TTLMs       *int64          `json:"ttlMs,omitempty"`
	Consistency string          `json:"consistency,omitempty"`
	MinSeq      uint64          `json:"minSeq,omitempty"`
	After       string          `json:"after,omitempty"`
	Limit       int             `json:"limit,omitempty"`
	From        json.RawMessage `json:"from,omitempty"`
	Sub         string          `json:"sub,omitempty"`
	Token       string          `json:"token,omitempty"`
	// Name, Grants: createRole and deleteRole. Role: createToken.
	Name   string  `json:"name,omitempty"`
	Grants []Grant `json:"grants,omitempty"`
	Role   string  `json:"role,omitempty"`
	// Location: rehome's new home.
	Location string `json:"location,omitempty"`
	// Scope restricts the request to the resource types its caller's role grants for the
	// op's kind (TypeAllowed); nil: no restriction. The API layer sets it from the caller's
	// token and nodes pass it along when they forward; it never comes from a client frame.
	Scope []string `json:"-"`
	// Bearer is the token an admin call's caller authenticated with; the node presents it
	// to the controllers. Set by the API layer, never read from a client frame.
	Bearer string `json:"-"`
	// JSONChecked: Data and Patch were found to be valid JSON within MaxDepth where the
	// request was decoded (the API server's frame parse), so validation does not scan them
	// again. It never travels on the wire.
	JSONChecked bool `json:"-"`
}

// Reply is the success payload of an op; the API layer writes only the fields the op
// defines (for list, "resources" is always present).
type Reply struct {
	Resource  *Resource   `json:"resource,omitempty"`
	Resources []Resource  `json:"resources,omitempty"`
	Next      string      `json:"next,omitempty"`
	Epoch     uint64      `json:"epoch,omitempty"`
	Seq       uint64      `json:"seq,omitempty"`
	Duplicate bool        `json:"duplicate,omitempty"`
	Ticket    *TicketInfo `json:"ticket,omitempty"`
	Token     string      `json:"token,omitempty"`
	Status    *Status     `json:"status,omitempty"`
	// Roles: listRoles.
	Roles []Role `json:"roles,omitempty"`
}

// TicketInfo is the "ticket" object of ticket replies and events.
type TicketInfo struct {
	Fence     uint64 `json:"fence"`
	ExpiresMs int64  `json:"expiresMs"`
}

// Resource is the resource object of docs/protocol.md §2.
type Resource struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Version uint64          `json:"version"`
	Data    json.RawMessage `json:"data"`
	Created time.Time       `json:"created"`
	Updated time.Time       `json:"updated"`
}
