package location

import (
	"errors"
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Reconciliation moves every group towards its target number of siblings. planRound is a
// pure function of the directory (with the leader's node states) and the nodes' latest
// reports, so it is tested without raft or clocks; the leader's loop applies its commands
// one by one through raft, and the FSM re-validates each against the state at its index.

const (
	// maxSiblings is the default number of siblings of a group (S=3).
	maxSiblings = 3
	// catchUpLag is how far behind the main's last seq a learner may be and still be
	// proposed as a voter: close enough that the joint quorum does not stall writes.
	catchUpLag = 64
	// reconcileEvery is the period of the leader's reconcile loop.
	reconcileEvery = 100 * time.Millisecond
)

// planRound returns the commands of one reconcile round, in the order to apply them:
// per group (by server ID) at most one config command (activate, else a demotion of
// amnesiac or silent voters, else proposeVoter), the learners whose registration the main
// gave up, the revivals of rebuilt stale copies, and at most one addLearner. It removes no
// other sibling. silent says which copies went
// unreported for copy-timeout (nil: none).
func planRound(d command.Directory, reports reportSet, silent silentFunc) []dirCommand {
	up := map[uint16]bool{}
	var eligible []uint16 // up and not spare, by ID
	where := map[uint16]string{}
	for _, n := range d.Nodes {
		where[n.ID] = n.Location
		if n.State == command.NodeUp {
			up[n.ID] = true
			eligible = append(eligible, n.ID)
		}
	}
	target := min(maxSiblings, len(eligible)-1)
	copies := copiesHeld(d.Groups, reports)

	var out []dirCommand
	for i := range d.Groups {
		g := &d.Groups[i]
		if g.Main == 0 || !up[g.Main] {
			continue // no main to replicate from; promotion is not this loop's business
		}
		if c := planConfig(g, up, reports, silent); c != nil {
			out = append(out, c)
		}
		out = append(out, planDrops(g, reports)...)
		out = append(out, planRevivals(g, up, reports)...)
		if len(g.Siblings) < target && !g.Managed {
			if node, ok := pickLearner(g, eligible, copies, where); ok {
				copies[node]++
				out = append(out, addLearner{Server: g.Server, Node: node})
			}
		}
	}
	return out
}

// mainReport returns the main's latest report on its group when it is current: sent as
// main, in the group's epoch.
func mainReport(g *command.GroupInfo, reports reportSet) (command.GroupReport, bool) {
	r, ok := reports.get(g.Main, g.Server)
	if !ok || r.Role != command.RoleMain || r.Epoch != g.Epoch {
		return command.GroupReport{}, false
	}
	return r, true
}

// planConfig returns the group's next config step: activate the pending config once the
// main committed an entry under it; else demote amnesiac or silent voters (stale.go); else
// propose the first caught-up learner with a fresh copy as a voter.
func planConfig(g *command.GroupInfo, up map[uint16]bool, reports reportSet, silent silentFunc) dirCommand {
	if c, _ := planDemotion(g, up, reports, silent); c != nil {
		return c
	}
	rep, ok := mainReport(g, reports)
	if !ok {
		return nil
	}
	if g.Pending != nil {
		if rep.Activated < g.Pending.Version {
			return nil
		}
		act := activate{Server: g.Server, Version: g.Pending.Version}
		for _, v := range g.Pending.Voters {
			if slices.Contains(g.Active.Voters, v) {
				continue
			}
			if sr, ok := reports.get(v, g.Server); ok && sr.Role == command.RoleSibling && sr.CopyID != "" {
				act.CopyIDs = append(act.CopyIDs, copyID{Node: v, CopyID: sr.CopyID})
			}
		}
		return act
	}
	for _, m := range g.Siblings {
		if m.State == command.SiblingSyncing && up[m.Node] && caughtUp(rep, m.Node) && freshCopy(g, m, reports) && registerAbort(rep, m.Node) == nil {
			return proposeVoter{Server: g.Server, Node: m.Node}
		}
	}
	return nil
}

// planDrops drops the learners whose registration the group's main gave up: keeping its
// log for them passed a bound (docs/register-sibling.md).
func planDrops(g *command.GroupInfo, reports reportSet) []dirCommand {
	rep, ok := mainReport(g, reports)
	if !ok {
		return nil
	}
	var out []dirCommand
	for _, m := range g.Siblings {
		if a := registerAbort(rep, m.Node); a != nil && m.State == command.SiblingSyncing && !slices.Contains(g.Voters(), m.Node) {
			out = append(out, dropLearner{Server: g.Server, Node: m.Node, Abort: a})
		}
	}
	return out
}

// registerAbort is the main's abort of node's registration, nil if none.
func registerAbort(main command.GroupReport, node uint16) *command.RegisterAbort {
	for _, p := range main.Siblings {
		if p.Node == node {
			return p.Aborted
		}
	}
	return nil
}

// caughtUp reports whether the main's report shows node recently acking within catchUpLag
// of the main's last seq.
func caughtUp(main command.GroupReport, node uint16) bool {
	for _, p := range main.Siblings {
		if p.Node == node {
			return p.Recent && p.Seq+catchUpLag >= main.LastSeq
		}
	}
	return false
}

// pickLearner chooses the eligible node without a copy of g that holds the fewest copies,
// the lowest ID among equals. While no copy of g lives outside its main's location (where
// names each node's), it chooses among the nodes of other locations first, so that a
// group outlives the loss of its main's location (docs/protocol.md §6).
func pickLearner(g *command.GroupInfo, eligible []uint16, copies map[uint16]int, where map[uint16]string) (uint16, bool) {
	mainLoc := where[g.Main]
	elsewhere := false
	for _, m := range g.Siblings {
		if m.State != command.SiblingStale && where[m.Node] != mainLoc {
			elsewhere = true
		}
	}
	pick := func(remoteOnly bool) (uint16, bool) {
		var best uint16
		found := false
		for _, n := range eligible { // ascending IDs: a strict < keeps the lowest on ties
			if n == g.Main || siblingIndex(g, n) >= 0 || (remoteOnly && where[n] == mainLoc) {
				continue
			}
			if !found || copies[n] < copies[best] {
				best, found = n, true
			}
		}
		return best, found
	}
	if !elsewhere {
		if n, ok := pick(true); ok {
			return n, true
		}
	}
	return pick(false)
}

// reconcile runs one round as leader of term t.
func (c *Controller) reconcile(t *leaderTerm) {
	d := c.directoryFor(t)
	reports := t.snapshotReports()
	c.planPromotions(t, d, reports)
	now := c.now()
	plan := withoutBackedOff(planRound(d, reports, t.copyClock(now, c.cfg.CopyTimeout)), t.registerWaiting(now))
	for _, cmd := range plan {
		select {
		case <-t.stop:
			return
		default:
		}
		switch v := cmd.(type) {
		case dropLearner:
			t.noteAbort(v) // before the drop commits: registerSibling answers on seeing it
		case activate:
			v.AtMs = c.now().UnixMilli()
			cmd = v
			for _, id := range v.CopyIDs {
				t.clearRegisterBackoff(v.Server, id.Node)
			}
		}
		idx, err := c.cons.propose(cmd)
		var ref *refusal
		switch {
		case errors.As(err, &ref):
			// The plan raced with another change (a join, a restart); next round replans.
			c.log.Debug().Str("kind", cmd.kind()).Err(err).Msg("reconcile command refused")
		case errors.Is(err, errNotLeader):
			return
		case err != nil:
			c.log.Warn().Str("kind", cmd.kind()).Err(err).Msg("reconcile command failed")
			return
		default:
			if d, ok := cmd.(dropLearner); ok {
				wait := t.noteRegisterAbort(d.Server, d.Node, c.now())
				c.log.Info().Uint16("group", d.Server).Uint16("node", d.Node).Dur("wait", wait).
					Msg("registration given up: the node is not added to the group again before the wait")
			}
			c.logApplied(cmd)
			if _, ok := cmd.(activate); ok {
				c.notePromotion(idx)
			}
		}
	}
}

// logApplied writes the event of a reconcile command that took effect.
func (c *Controller) logApplied(cmd dirCommand) {
	switch v := cmd.(type) {
	case addLearner:
		c.log.Info().Uint16("group", v.Server).Uint16("node", v.Node).Msg("learner added")
	case proposeVoter:
		e := c.log.Info().Uint16("group", v.Server).Uint16("node", v.Node)
		if g, ok := c.fsm.group(v.Server); ok && g.Pending != nil {
			e = e.Uint64("version", g.Pending.Version).Interface("voters", g.Pending.Voters)
		}
		e.Msg("config proposed")
	case demote:
		e := c.log.Warn()
		if v.To == command.SiblingSyncing {
			e = e.Str("reason", "the copy reports another copy ID: its disk was lost")
		} else {
			e = e.Str("reason", "the copy was not reported for copy-timeout").Dur("copyTimeout", c.cfg.CopyTimeout)
		}
		e.Uint16("group", v.Server).Interface("nodes", v.Nodes).Str("to", v.To).Msg("voters demoted: config proposed")
	case dropLearner:
		e := c.log.Warn().Uint16("group", v.Server).Uint16("node", v.Node)
		if v.Abort != nil {
			e = e.Str("bound", v.Abort.Bound).Uint64("limit", v.Abort.Limit).Uint64("held", v.Abort.Held)
		}
		e.Msg("registration aborted by the main: learner dropped")
	case reviveStale:
		c.log.Info().Uint16("group", v.Server).Uint16("node", v.Node).Msg("stale copy rebuilt: learner again")
	case activate:
		e := c.log.Info().Uint16("group", v.Server).Uint64("version", v.Version)
		if g, ok := c.fsm.group(v.Server); ok {
			e = e.Interface("voters", g.Active.Voters)
		}
		e.Msg("config activated")
	}
}
