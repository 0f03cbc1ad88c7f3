package location

import (
	"context"
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The admin calls that move copies: registerSibling, removeSibling and drain. Each commits
// its steps through raft and replies once the directory shows the outcome; a node's copy
// catches up by log replication and the reconcile loop makes a caught-up learner a voter.

// adminTimeout bounds one admin call.
const adminTimeout = 10 * time.Minute

// waitGroup blocks until cond holds for group server, ctx ends, or leadership is lost.
func (c *Controller) waitGroup(ctx context.Context, t *leaderTerm, server uint16, cond func(g *command.GroupInfo) bool) *command.Error {
	for {
		st, changed := c.fsm.view()
		g, ok := st.Groups[server]
		if !ok {
			return command.Errorf(command.CodeNotFound, "no group %d", server)
		}
		if cond(g) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return command.Errorf(command.CodeTimeout, "group %d: %v", server, ctx.Err())
		case <-t.stop:
			return command.Errorf(command.CodeUnavailable, "controller %s lost leadership; retry", c.cfg.ID)
		}
	}
}

// serverNode reads the server and node fields of an admin request.
func serverNode(req *command.Request, needServer bool) (uint16, uint16, *command.Error) {
	if req.Node == nil || *req.Node < 1 || *req.Node > 65535 || (needServer && (req.Server == nil || *req.Server < 1 || *req.Server > 65535)) {
		return 0, 0, command.Errorf(command.CodeBadRequest, "%s needs server and node in 1..65535", req.Op)
	}
	var server uint16
	if req.Server != nil {
		server = uint16(*req.Server)
	}
	return server, uint16(*req.Node), nil
}

// groupAndNode reads an admin request's server and node and looks both up in the directory
// (not_found for either unknown).
func (c *Controller) groupAndNode(t *leaderTerm, req *command.Request) (command.Directory, *command.GroupInfo, *command.NodeInfo, *command.Error) {
	server, node, err := serverNode(req, true)
	if err != nil {
		return command.Directory{}, nil, nil, err
	}
	d := c.directoryFor(t)
	g := d.Group(server)
	if g == nil {
		return d, nil, nil, command.Errorf(command.CodeNotFound, "no group %d", server)
	}
	n := d.NodeByID(node)
	if n == nil {
		return d, nil, nil, command.Errorf(command.CodeNotFound, "no node %d", node)
	}
	return d, g, n, nil
}

// adminRegisterSibling adds node as a syncing sibling of group server and replies once it
// votes.
func (c *Controller) adminRegisterSibling(ctx context.Context, t *leaderTerm, req *command.Request) *command.Error {
	_, g, n, err := c.groupAndNode(t, req)
	if err != nil {
		return err
	}
	server, node := g.Server, n.ID
	// A stale copy does not count as one (docs/replication.md case 12 D): registering its node
	// again makes it a learner; the node wipes the old copy (its ID is the member's
	// StaleCopyID) and syncs a fresh one.
	m := member(g, node)
	stale := m != nil && m.State == command.SiblingStale
	if g.Main == node || (m != nil && !stale) {
		return command.Errorf(command.CodeConflict, "node %d already holds a copy of group %d", node, server)
	}
	_, end := c.ops.start(operation{op: command.OperationRegister, server: server, node: node, started: c.now()})
	defer end()
	if n.State == command.NodeDown {
		return command.Errorf(command.CodeUnavailable, "node %d is down", node)
	}
	if n.State == command.NodeSpare {
		if e := c.proposeLogged(setSpare{Node: node, Spare: false}); e != nil {
			return command.Errorf(command.CodeUnavailable, "register node %d: %v", node, e)
		}
	}
	if e := c.proposeLogged(setManaged{Server: server}); e != nil {
		return command.Errorf(command.CodeUnavailable, "register node %d: %v", node, e)
	}
	var add dirCommand = addLearner{Server: server, Node: node}
	if stale {
		add = reviveStale{Server: server, Node: node}
	}
	if e := c.proposeLogged(add); e != nil {
		return command.Errorf(command.CodeConflict, "register node %d in group %d: %v", node, server, e)
	}
	c.log.Info().Uint16("group", server).Uint16("node", node).Msg("registerSibling: syncing")
	t.takeAbort(server, node) // an earlier registration's
	gone := false
	if e := c.waitGroup(ctx, t, server, func(g *command.GroupInfo) bool {
		m := member(g, node)
		gone = g.Main != node && m == nil
		return gone || g.Main == node || (m != nil && m.State == command.SiblingVoting && slices.Contains(g.Active.Voters, node))
	}); e != nil || !gone {
		return e
	}
	// The learner left the group before it voted: the main gave the registration up, or
	// someone removed it.
	if a, ok := t.takeAbort(server, node); ok && a != nil {
		return a.Err(server, node)
	}
	return command.Errorf(command.CodeConflict, "registerSibling of node %d in group %d: the copy was removed from the group before it voted", node, server)
}

// adminRemoveSibling takes node out of group server, refusing when the remaining voters
// that are up could not form a write quorum.
func (c *Controller) adminRemoveSibling(ctx context.Context, t *leaderTerm, req *command.Request) *command.Error {
	d, g, n, err := c.groupAndNode(t, req)
	if err != nil {
		return err
	}
	server, node := g.Server, n.ID
	if g.Main == node {
		return command.Errorf(command.CodeConflict, "node %d is the main of group %d; promote another first", node, server)
	}
	if member(g, node) == nil {
		return command.Errorf(command.CodeNotFound, "node %d is not a sibling of group %d", node, server)
	}
	if slices.Contains(g.Active.Voters, node) {
		rest := slices.DeleteFunc(slices.Clone(g.Active.Voters), func(n uint16) bool { return n == node })
		up := 0
		for _, v := range rest {
			if n := d.NodeByID(v); n != nil && n.State == command.NodeUp {
				up++
			}
		}
		if len(rest) > 0 && up < len(rest)/2+1 {
			return command.Errorf(command.CodeConflict, "removing node %d would leave group %d %d voters of which %d are up: no write quorum",
				node, server, len(rest), up)
		}
		if g.Pending != nil {
			return command.Errorf(command.CodeConflict, "group %d has a pending config change; retry once it is active", server)
		}
	}
	if e := c.proposeLogged(removeSibling{Server: server, Node: node}); e != nil {
		return command.Errorf(command.CodeConflict, "remove node %d from group %d: %v", node, server, e)
	}
	c.log.Info().Uint16("group", server).Uint16("node", node).Msg("removeSibling: config proposed")
	return c.waitGroup(ctx, t, server, func(g *command.GroupInfo) bool { return member(g, node) == nil })
}

// adminDrain moves every main role and every copy off node, then marks it spare. Main
// roles move by planned promotion; copies by registering a replacement first and removing
// the node's copy only once the replacement votes. The node's own location first has every
// other location do the same with their groups' copies (drain_locations.go).
func (c *Controller) adminDrain(ctx context.Context, t *leaderTerm, req *command.Request, via adminVia) *command.Error {
	_, node, err := serverNode(req, false)
	if err != nil {
		return err
	}
	d := c.directoryFor(t)
	n := d.NodeByID(node)
	if n == nil {
		if via.from != "" {
			return nil // never a guest here: it holds no copy of this location's groups
		}
		return command.Errorf(command.CodeNotFound, "no node %d", node)
	}
	if done, e := c.acrossLocations(ctx, command.OpDrain, req, n, via); done || e != nil {
		return e
	}
	d = c.directoryFor(t)
	var total, done uint64
	for _, g := range d.Groups {
		if g.Main == node || member(&g, node) != nil {
			total++
		}
	}
	id, end := c.ops.start(operation{op: command.OperationDrain, node: node, started: c.now(), phase: "promote", total: total})
	defer end()
	for _, g := range d.Groups {
		if g.Main != node {
			continue
		}
		c.ops.step(id, "promote", done, total)
		target, e := c.drainTarget(ctx, t, g.Server, node)
		if e != nil {
			return e
		}
		srv, tn := int64(g.Server), int64(target)
		if e := c.adminPromote(ctx, t, &command.Request{Op: command.OpPromote, Server: &srv, Node: &tn}, command.ReasonDrain); e != nil {
			return e
		}
		if e := c.waitGroup(ctx, t, g.Server, func(g *command.GroupInfo) bool { return g.Pending == nil }); e != nil {
			return e
		}
		done++
	}
	d = c.directoryFor(t)
	for _, g := range d.Groups {
		if member(&g, node) == nil {
			continue
		}
		c.ops.step(id, "move", done, max(total, done+1))
		if repl, ok := c.replacement(t, g.Server, node); ok {
			srv, rn := int64(g.Server), int64(repl)
			if e := c.adminRegisterSibling(ctx, t, &command.Request{Op: command.OpRegisterSibling, Server: &srv, Node: &rn}); e != nil {
				return e
			}
		}
		srv, nn := int64(g.Server), int64(node)
		if e := c.adminRemoveSibling(ctx, t, &command.Request{Op: command.OpRemoveSibling, Server: &srv, Node: &nn}); e != nil {
			return e
		}
		done++
	}
	c.ops.step(id, "spare", done, max(total, done))
	if e := c.proposeLogged(setSpare{Node: node, Spare: true}); e != nil {
		return command.Errorf(command.CodeUnavailable, "drain node %d: %v", node, e)
	}
	c.log.Info().Uint16("node", node).Msg("drain: node is spare")
	return nil
}

// drainTarget returns the voting sibling to hand group server's main role to, registering
// one first when the group has none.
func (c *Controller) drainTarget(ctx context.Context, t *leaderTerm, server, from uint16) (uint16, *command.Error) {
	d := c.directoryFor(t)
	g := d.Group(server)
	reports := t.snapshotReports()
	best, found := uint16(0), false
	var bestSeq uint64
	for _, v := range g.Active.Voters {
		n := d.NodeByID(v)
		if n == nil || n.State != command.NodeUp {
			continue
		}
		var seq uint64
		if r, ok := reports.get(v, server); ok {
			seq = r.LastSeq
		}
		if !found || seq > bestSeq {
			best, bestSeq, found = v, seq, true
		}
	}
	if found {
		return best, nil
	}
	if len(g.Active.Voters) > 0 {
		// Its voters are there but none was heard within down-after (a loaded machine, a
		// leader that has just taken over): a retry may find one.
		return 0, command.Errorf(command.CodeUnavailable, "group %d: none of its voting siblings %v is up; retry", server, g.Active.Voters)
	}
	repl, ok := c.replacement(t, server, from)
	if !ok {
		return 0, command.Errorf(command.CodeConflict, "group %d has no sibling to take over and no node to add one", server)
	}
	srv, rn := int64(server), int64(repl)
	if e := c.adminRegisterSibling(ctx, t, &command.Request{Op: command.OpRegisterSibling, Server: &srv, Node: &rn}); e != nil {
		return 0, e
	}
	return repl, nil
}

// replacement picks an up, non-spare node holding no copy of group server (fewest copies
// of every home's groups first, then lowest ID).
func (c *Controller) replacement(t *leaderTerm, server, except uint16) (uint16, bool) {
	d := c.directoryFor(t)
	g := d.Group(server)
	copies := copiesHeld(d.Groups, t.snapshotReports())
	best, found := uint16(0), false
	for _, n := range d.Nodes {
		if n.ID == except || n.State != command.NodeUp || n.ID == g.Main || member(g, n.ID) != nil {
			continue
		}
		if !found || copies[n.ID] < copies[best] {
			best, found = n.ID, true
		}
	}
	return best, found
}

// adminRemoveNode decommissions node: it must be spare (drained), hold no copy, and be
// stopped (not heard within down-after), since a running process would join again at once.
// A process started later under the same ID joins as a new node. The node's own location
// checks its own record first, then has every other location check that it homes no group
// the node holds a copy of and remove its guest record (drain_locations.go).
func (c *Controller) adminRemoveNode(ctx context.Context, t *leaderTerm, req *command.Request, via adminVia) *command.Error {
	_, node, err := serverNode(req, false)
	if err != nil {
		return err
	}
	d := c.directoryFor(t)
	n := d.NodeByID(node)
	if n == nil {
		if via.from != "" {
			return nil // never a guest here, or removed already
		}
		return command.Errorf(command.CodeNotFound, "no node %d", node)
	}
	if act, _, passTo := c.nodeRouting(n, via); passTo != "" || !act {
		return c.adminAt(ctx, passTo, command.OpRemoveNode, req, via, "")
	}
	var held []uint16
	for _, g := range d.Groups {
		if g.Main == node || member(&g, node) != nil {
			held = append(held, g.Server)
		}
	}
	switch {
	case len(held) > 0:
		return command.Errorf(command.CodeConflict, "node %d holds copies of groups %v; drain it first", node, held)
	case n.State != command.NodeSpare:
		return command.Errorf(command.CodeConflict, "node %d is %s, not spare; drain it first", node, n.State)
	case via.from == "" && t.heardWithin(node, time.Now(), c.cfg.DownAfter):
		return command.Errorf(command.CodeConflict, "node %d is still running; stop its process first", node)
	}
	if via.from == "" {
		if _, e := c.acrossLocations(ctx, command.OpRemoveNode, req, n, via); e != nil {
			return e
		}
	}
	if e := c.proposeLogged(removeNode{Node: node}); e != nil {
		return command.Errorf(command.CodeConflict, "remove node %d: %v", node, e)
	}
	c.log.Info().Uint16("node", node).Msg("node removed from the directory")
	return nil
}
