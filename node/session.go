package node

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
)

var sessionIDs atomic.Uint64

// Session is one client connection's state: the highest seq it read per group (so sibling
// reads never go backwards) and its identity on forwarding links (so its writes keep their
// order).
type Session struct {
	n         *Node
	id        uint64
	forwarded bool // started by another node's forwarder: never forward again
	mu        sync.Mutex
	floors    map[command.ServerID]uint64
}

// NewSession starts a client connection's session (see api.Session).
func (n *Node) NewSession() *Session { return n.newSession(false) }

func (n *Node) newSession(forwarded bool) *Session {
	return &Session{n: n, id: sessionIDs.Add(1), forwarded: forwarded, floors: map[command.ServerID]uint64{}}
}

// Close ends the session.
func (s *Session) Close() {
	s.closeEvents()
	if !s.forwarded {
		s.n.fwd.closeSession(s.id)
	}
}

// Start begins req; it is called in arrival order and fixes the order of writes.
func (s *Session) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	if err := command.ValidateRequest(req); err != nil {
		return failed(err)
	}
	switch {
	case isWrite(req.Op):
		return s.write(ctx, req, admin)
	}
	switch req.Op {
	case command.OpSubscribe, command.OpUnsubscribe:
		return s.subscriptionOp(ctx, req)
	case command.OpGet:
		return s.get(ctx, req, admin)
	case command.OpList:
		return s.list(ctx, req, admin)
	case command.OpStatus:
		return func() (*command.Reply, error) {
			st, err := s.n.Status(ctx)
			if err != nil {
				return nil, err
			}
			return &command.Reply{Status: st}, nil
		}
	case command.OpRegisterSibling, command.OpRemoveSibling, command.OpPromote, command.OpDrain, command.OpRemoveNode, command.OpRehome,
		command.OpCreateRole, command.OpDeleteRole, command.OpListRoles, command.OpCreateToken, command.OpRevokeToken:
		if !admin {
			return failed(command.Errorf(command.CodeForbidden, "%s needs an admin token", req.Op))
		}
		if req.Op == command.OpRegisterSibling {
			return s.registerWithProgress(ctx, req)
		}
		if req.Op == command.OpRehome && s.n.adminCtrl(req) == nil {
			return failed(command.Errorf(command.CodeBadRequest, "rehome of group %d: location %q is unknown to this node", *req.Server, req.Location))
		}
		return func() (*command.Reply, error) { return s.n.adminCtrl(req).admin(ctx, req) }
	}
	return failed(command.Errorf(command.CodeBadRequest, "op %q is not supported by this server yet", req.Op))
}

// StartAsync begins req like Start and calls done once with its outcome (api.AsyncSession).
// A write to a group this node is main of is answered from the commit itself, with no
// goroutine waiting for it; every other request is waited for as Start returns it.
func (s *Session) StartAsync(ctx context.Context, req *command.Request, admin bool, done func(*command.Reply, error)) {
	if isWrite(req.Op) && command.ValidateRequest(req) == nil {
		if gid, err := s.target(req); err == nil {
			if g := s.n.localGroup(gid); g != nil && g.submitAsync(s.withServer(req, gid), done) {
				return
			}
		}
	}
	wait := s.Start(ctx, req, admin)
	go func() { done(wait()) }()
}

func isWrite(op string) bool {
	switch op {
	case command.OpCreate, command.OpUpdate, command.OpPatch, command.OpDelete,
		command.OpAcquireTicket, command.OpRenewTicket, command.OpReleaseTicket:
		return true
	}
	return false
}

// withServer fills in a create's group, which its ID will name.
func (s *Session) withServer(req *command.Request, gid command.ServerID) *command.Request {
	if req.Op != command.OpCreate || req.Server != nil {
		return req
	}
	r := *req
	sv := int64(gid)
	r.Server = &sv
	return &r
}

// target returns the group a write or read of req goes to.
func (s *Session) target(req *command.Request) (command.ServerID, error) {
	if req.RID != "" {
		return command.GroupOf(req.RID)
	}
	if req.Server != nil {
		g := command.ServerID(*req.Server)
		if s.n.directoryGroup(g) == nil {
			return 0, command.Errorf(command.CodeNotFound, "no group %d", g)
		}
		return g, nil
	}
	// Placement: a group this node is main of (its own first), else its own group.
	self := s.n.cfg.ID
	if gi := s.n.directoryGroup(self); gi != nil && gi.Main == uint16(self) {
		return self, nil
	}
	if d := s.n.directory(); d != nil {
		for _, gi := range d.Groups {
			if gi.Main == uint16(self) {
				return command.ServerID(gi.Server), nil
			}
		}
	}
	return self, nil
}

// route answers locally when this node is main of group gid, else forwards to the main.
func (s *Session) route(ctx context.Context, gid command.ServerID, req *command.Request, admin bool,
	local func(g *group) func() (*command.Reply, error)) func() (*command.Reply, error) {
	if g := s.n.localGroup(gid); g != nil && g.isMain() {
		return local(g)
	}
	if s.forwarded {
		// The sender's directory names this node main; this node may not have applied that
		// directory yet (a planned hand-over releases its waiting writes the moment the
		// old main learns of it). Wait a little for the role rather than bounce the write.
		if g := s.n.localGroup(gid); g != nil {
			wctx, cancel := context.WithTimeout(ctx, s.n.cfg.DownAfter)
			err := g.waitFor(wctx, func() (bool, error) { return g.c.Role() == core.Main, nil })
			cancel()
			if err == nil {
				return local(g)
			}
		}
		return failed(command.Errorf(command.CodeNoMain, "node %d is not the main of group %d", s.n.cfg.ID, gid))
	}
	gi := s.n.directoryGroup(gid)
	if gi == nil {
		return failed(command.Errorf(command.CodeNotFound, "no group %d", gid))
	}
	if gi.Main == 0 {
		return failed(command.Errorf(command.CodeNoMain, "group %d has no main", gid))
	}
	if gi.Main == uint16(s.n.cfg.ID) {
		if err := s.n.diskFault(); err != nil {
			return failed(command.Errorf(command.CodeUnavailable, "group %d: node %d's disk fails; retry: %v", gid, s.n.cfg.ID, err))
		}
		return failed(command.Errorf(command.CodeNoMain, "group %d: this node is becoming its main", gid))
	}
	return s.n.fwd.start(ctx, gi.Main, s.id, req, admin)
}

func (s *Session) write(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	gid, err := s.target(req)
	if err != nil {
		return failed(err)
	}
	req = s.withServer(req, gid)
	wctx, cancel := context.WithTimeout(ctx, s.n.cfg.WriteTimeout)
	wait := s.route(wctx, gid, req, admin, func(g *group) func() (*command.Reply, error) {
		w, moved := g.submit(wctx, req)
		if !moved {
			return w
		}
		// The main role moved before this write executed here: send it to the new main.
		if s.forwarded {
			return failed(command.Errorf(command.CodeNoMain, "group %d: the main moved", gid))
		}
		if gi := s.n.directoryGroup(gid); gi != nil && gi.Main != 0 && gi.Main != uint16(s.n.cfg.ID) {
			return s.n.fwd.start(wctx, gi.Main, s.id, req, admin)
		}
		return failed(command.Errorf(command.CodeNoMain, "group %d: the main moved", gid))
	})
	return func() (*command.Reply, error) {
		defer cancel()
		return wait()
	}
}

func (s *Session) get(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	gid, err := s.target(req)
	if err != nil {
		return failed(err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.n.cfg.WriteTimeout)
	var wait func() (*command.Reply, error)
	if req.Consistency == command.SiblingRead {
		wait = s.siblingGet(rctx, gid, req, admin)
	} else {
		wait = s.route(rctx, gid, req, admin, func(g *group) func() (*command.Reply, error) {
			return func() (*command.Reply, error) {
				idx, err := g.linearizableRead(rctx)
				if err != nil {
					return nil, err
				}
				return g.readResource(req.RID, idx)
			}
		})
	}
	return func() (*command.Reply, error) {
		defer cancel()
		r, err := wait()
		if err == nil && r != nil {
			s.raiseFloor(gid, r.Seq)
		}
		return r, err
	}
}

func (s *Session) floor(gid command.ServerID, minSeq uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.floors[gid], minSeq)
}

func (s *Session) raiseFloor(gid command.ServerID, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.floors[gid] {
		s.floors[gid] = seq
	}
}

// siblingGet reads from this node's copy when it has one that is serving and has reached the
// session's floor; otherwise the main answers.
func (s *Session) siblingGet(ctx context.Context, gid command.ServerID, req *command.Request, admin bool) func() (*command.Reply, error) {
	floor := s.floor(gid, req.MinSeq)
	if g := s.n.localGroup(gid); g != nil && g.serving() {
		return func() (*command.Reply, error) {
			at, gen, err := g.siblingRead(ctx, floor)
			if err == nil {
				r, rerr := g.readResource(req.RID, at)
				err = g.stillValid(gen)
				if err == nil {
					return r, rerr
				}
			}
			if s.forwarded {
				return nil, err
			}
			r := *req
			r.MinSeq = floor
			return s.route(ctx, gid, &r, admin, func(g *group) func() (*command.Reply, error) {
				return func() (*command.Reply, error) { return nil, err }
			})()
		}
	}
	r := *req
	r.MinSeq = floor
	if !s.forwarded {
		// A copy in this node's location answers before the main does (docs/protocol.md §6);
		// if it cannot (it lags the floor, it stopped serving), the main does.
		if gi := s.n.directoryGroup(gid); gi != nil {
			if near := s.n.nearCopy(gi); near != 0 && near != gi.Main {
				wait := s.n.fwd.start(ctx, near, s.id, &r, admin)
				return func() (*command.Reply, error) {
					if rep, err := wait(); err == nil || !command.CodeOf(err).Retryable() {
						return rep, err
					}
					return s.route(ctx, gid, &r, admin, s.mainSiblingRead(ctx, req.RID, floor))()
				}
			}
		}
	}
	return s.route(ctx, gid, &r, admin, s.mainSiblingRead(ctx, req.RID, floor))
}

// mainSiblingRead is a `sibling` read served by the main's copy.
func (s *Session) mainSiblingRead(ctx context.Context, rid string, floor uint64) func(g *group) func() (*command.Reply, error) {
	return func(g *group) func() (*command.Reply, error) {
		return func() (*command.Reply, error) {
			at, gen, err := g.siblingRead(ctx, floor)
			if err != nil {
				return nil, err
			}
			r, err := g.readResource(rid, at)
			if verr := g.stillValid(gen); verr != nil {
				return nil, verr
			}
			return r, err
		}
	}
}

func (g *group) readResource(rid string, at uint64) (*command.Reply, error) {
	res, _, err := g.gs.Resource(rid)
	if err != nil {
		return nil, command.Errorf(command.CodeInternal, "group %d: reading %s: %v", g.id, rid, err)
	}
	if res == nil {
		return nil, command.Errorf(command.CodeNotFound, "no resource %s", rid)
	}
	return &command.Reply{Resource: res, Seq: at}, nil
}

// list reads each group in rid order (group prefixes "<server>-" sort like the rids they
// start), each consistently, from its main.
func (s *Session) list(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	limit := command.ClampLimit(req.Limit)
	var groups []command.ServerID
	if req.Server != nil {
		gid := command.ServerID(*req.Server)
		if s.n.directoryGroup(gid) == nil {
			return failed(command.Errorf(command.CodeNotFound, "no group %d", gid))
		}
		groups = []command.ServerID{gid}
	} else if d := s.n.directory(); d != nil {
		for _, gi := range d.Groups {
			groups = append(groups, command.ServerID(gi.Server))
		}
		sort.Slice(groups, func(i, j int) bool {
			return strconv.Itoa(int(groups[i]))+"-" < strconv.Itoa(int(groups[j]))+"-"
		})
	}
	rctx, cancel := context.WithTimeout(ctx, s.n.cfg.WriteTimeout)
	return func() (*command.Reply, error) {
		defer cancel()
		out := &command.Reply{Resources: []command.Resource{}}
		for _, gid := range groups {
			prefix := strconv.Itoa(int(gid)) + "-"
			after := req.After
			if after != "" && after >= prefix && len(after) > len(prefix) && after[:len(prefix)] != prefix {
				continue // every rid of this group is at or before after
			}
			if after != "" && after < prefix {
				after = ""
			}
			sub := command.Request{Op: command.OpList, Type: req.Type, After: after, Limit: limit - len(out.Resources)}
			sv := int64(gid)
			sub.Server = &sv
			r, err := s.route(rctx, gid, &sub, admin, func(g *group) func() (*command.Reply, error) {
				return func() (*command.Reply, error) {
					if _, err := g.linearizableRead(rctx); err != nil {
						return nil, err
					}
					res, err := g.gs.List(sub.Type, sub.After, sub.Limit+1)
					if err != nil {
						return nil, command.Errorf(command.CodeInternal, "group %d: list: %v", gid, err)
					}
					page := &command.Reply{Resources: res}
					if len(res) > sub.Limit {
						page.Resources, page.Next = res[:sub.Limit], res[sub.Limit-1].ID
					}
					return page, nil
				}
			})()
			if err != nil {
				return nil, err
			}
			out.Resources = append(out.Resources, r.Resources...)
			if len(out.Resources) >= limit {
				out.Resources = out.Resources[:limit]
				out.Next = out.Resources[limit-1].ID
				return out, nil
			}
			if req.Server != nil && r.Next != "" {
				out.Next = r.Next
			}
		}
		return out, nil
	}
}
