package client

import (
	"context"
	"encoding/json"
	"net/url"
	"sort"

	"github.com/sibylhq/sibyl/command"
)

// WriteOpt sets an optional field of a write.
type WriteOpt func(*command.Request)

// WithKey makes the write idempotent under key (and lets the typed helpers retry it).
func WithKey(key string) WriteOpt { return func(r *command.Request) { r.Key = key } }

// WithIfVersion makes the write conditional on the resource's current version.
func WithIfVersion(v uint64) WriteOpt { return func(r *command.Request) { r.IfVersion = &v } }

// WithServer places a create in the group of server.
func WithServer(server command.ServerID) WriteOpt {
	return func(r *command.Request) { s := int64(server); r.Server = &s }
}

// WithTicket carries the fence of the ticket the caller holds on the resource.
func WithTicket(fence uint64) WriteOpt { return func(r *command.Request) { r.Ticket = &fence } }

func write(op, rid string, opts []WriteOpt) *command.Request {
	r := &command.Request{Op: op, RID: rid}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Create makes a resource. Without WithServer the client names a group itself (see
// placement), so that a keyed create retried through another node stays in one group,
// where its key is known.
func (c *Client) Create(ctx context.Context, typ string, data json.RawMessage, opts ...WriteOpt) (*command.Reply, error) {
	r := write(command.OpCreate, "", opts)
	r.Type, r.Data = typ, data
	if r.Server == nil {
		r.Server = c.placement(ctx)
	}
	return c.DoRetry(ctx, r)
}

// Get reads rid; consistency is command.Linearizable (also for "") or command.SiblingRead.
func (c *Client) Get(ctx context.Context, rid, consistency string) (*command.Reply, error) {
	return c.DoRetry(ctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: consistency})
}

// Update replaces the data of rid.
func (c *Client) Update(ctx context.Context, rid string, data json.RawMessage, opts ...WriteOpt) (*command.Reply, error) {
	r := write(command.OpUpdate, rid, opts)
	r.Data = data
	return c.DoRetry(ctx, r)
}

// Patch applies an RFC 7386 merge patch to the data of rid.
func (c *Client) Patch(ctx context.Context, rid string, patch json.RawMessage, opts ...WriteOpt) (*command.Reply, error) {
	r := write(command.OpPatch, rid, opts)
	r.Patch = patch
	return c.DoRetry(ctx, r)
}

// Delete removes rid.
func (c *Client) Delete(ctx context.Context, rid string, opts ...WriteOpt) (*command.Reply, error) {
	return c.DoRetry(ctx, write(command.OpDelete, rid, opts))
}

// ListOptions select a page of resources; zero values mean "any" and the default limit.
type ListOptions struct {
	Type   string
	Server command.ServerID
	After  string
	Limit  int
}

// List returns one page of resources in ascending rid order; Reply.Next, when set, is
// the After of the next page.
func (c *Client) List(ctx context.Context, o ListOptions) (*command.Reply, error) {
	r := &command.Request{Op: command.OpList, Type: o.Type, After: o.After, Limit: o.Limit}
	if o.Server != 0 {
		s := int64(o.Server)
		r.Server = &s
	}
	return c.DoRetry(ctx, r)
}

// Status returns the cluster status as the connected node sees it.
func (c *Client) Status(ctx context.Context) (*command.Status, error) {
	rep, err := c.DoRetry(ctx, &command.Request{Op: command.OpStatus})
	if err != nil {
		return nil, err
	}
	return rep.Status, nil
}

// placement picks the group for a create without a server, as the connected node would
// (docs/protocol.md §2): a group it is main of, its own first, else its own group. When the
// status does not show which node this is, the first group with a main is taken: any
// group is a valid place, and naming one is what keeps retries in one group. It returns
// nil, letting the node choose, only when no group is known at all. The choice is kept
// per node.
func (c *Client) placement(ctx context.Context) *int64 {
	addr := c.Addr()
	c.placeMu.Lock()
	place, ok := c.places[addr]
	c.placeMu.Unlock()
	if ok {
		return &place
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil
	}
	addr = c.Addr() // Status may have reconnected
	p := choosePlacement(st, hostOf(addr))
	if p != nil {
		c.placeMu.Lock()
		c.places[addr] = *p
		c.placeMu.Unlock()
	}
	return p
}

func hostOf(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	return u.Host
}

func choosePlacement(st *command.Status, host string) *int64 {
	groups := append([]command.StatusGroup(nil), st.Groups...)
	sort.Slice(groups, func(i, j int) bool { return groups[i].Server < groups[j].Server })
	pick := func(s uint16) *int64 { v := int64(s); return &v }
	self := uint16(0)
	for _, n := range st.Nodes {
		if n.Addr == host {
			self = n.ID
		}
	}
	if self != 0 {
		var mainOf *int64
		for _, g := range groups {
			if g.Main != nil && *g.Main == self {
				if g.Server == self {
					return pick(g.Server)
				}
				if mainOf == nil {
					mainOf = pick(g.Server)
				}
			}
		}
		if mainOf != nil {
			return mainOf
		}
		for _, g := range groups {
			if g.Server == self {
				return pick(g.Server)
			}
		}
	}
	for _, g := range groups {
		if g.Main != nil {
			return pick(g.Server)
		}
	}
	return nil
}
