package location

import (
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Demotion planning (docs/replication.md cases 5 and 12), pure functions of the directory, the
// nodes' reports and the leader's copy clock, so they are table-tested without raft.
//
//   - Amnesia: a voting sibling whose node reports the group with another copy ID than the
//     one recorded when it became voting lost its disk. It is demoted to syncing at once
//     (whatever that does to W: a copy that lost what it acked must not count) and votes
//     again through the usual catch-up and proposeVoter, with its new copy ID.
//   - Stale: a voting sibling whose node has not reported the group for copy-timeout is
//     demoted to stale, unless that would leave W impossible: then it stays, and status
//     flags it (StatusSibling.Unreachable).
//   - Revival: a stale sibling whose node is up and reports the group with a copy ID other
//     than the stale one (it wiped and rebuilt it), or reports no copy of it at all, is made
//     syncing again.

const (
	// DefaultCopyTimeout is how long a voting copy may go unreported before it is demoted to
	// stale: the idempotency retention (10 minutes).
	DefaultCopyTimeout = 10 * time.Minute
)

// silentFunc reports whether node's copy of group server went unreported for longer than
// the copy timeout. A nil silentFunc means no copy is silent.
type silentFunc func(node, server uint16) bool

func (f silentFunc) is(node, server uint16) bool { return f != nil && f(node, server) }

// writeQuorum is W for a config of s voting siblings: floor(s/2)+1, and 0 (the main alone)
// for s = 0.
func writeQuorum(s int) int {
	if s == 0 {
		return 0
	}
	return s/2 + 1
}

// planDemotion returns g's demotion step, or nil: amnesiac voters first, then silent ones.
// blocked lists the silent voters that stay because demoting them would leave W
// impossible: fewer live voters (up and reporting the copy) than W of the active config or
// of the config without them, or the main is not up.
func planDemotion(g *command.GroupInfo, up map[uint16]bool, reports reportSet, silent silentFunc) (cmd dirCommand, blocked []uint16) {
	if g.Pending != nil || (g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing) {
		return nil, nil // one membership change at a time; a sealing attempt froze the configs
	}
	var amnesiac, quiet []uint16
	for _, m := range g.Siblings {
		if m.State != command.SiblingVoting || m.Demote != "" || !slices.Contains(g.Active.Voters, m.Node) {
			continue
		}
		if r, ok := reports.get(m.Node, g.Server); ok && m.CopyID != "" && r.CopyID != m.CopyID {
			amnesiac = append(amnesiac, m.Node)
		} else if silent.is(m.Node, g.Server) {
			quiet = append(quiet, m.Node)
		}
	}
	if len(amnesiac) > 0 {
		return demote{Server: g.Server, Nodes: amnesiac, To: command.SiblingSyncing}, nil
	}
	if len(quiet) == 0 {
		return nil, nil
	}
	live := func(voters []uint16) int {
		n := 0
		for _, v := range voters {
			if up[v] && !silent.is(v, g.Server) {
				n++
			}
		}
		return n
	}
	rest := slices.DeleteFunc(slices.Clone(g.Active.Voters), func(n uint16) bool { return slices.Contains(quiet, n) })
	if !up[g.Main] || live(rest) < writeQuorum(len(rest)) || live(g.Active.Voters) < writeQuorum(len(g.Active.Voters)) {
		return nil, quiet
	}
	return demote{Server: g.Server, Nodes: quiet, To: command.SiblingStale}, nil
}

// planRevivals returns a reviveStale for every stale member of g whose node is up and shows
// a rebuilt copy: a report of the group with a copy ID other than the stale one (or, when
// none was recorded, a resyncing one), or a heartbeat that reports no copy of the group.
func planRevivals(g *command.GroupInfo, up map[uint16]bool, reports reportSet) []dirCommand {
	var out []dirCommand
	for _, m := range g.Siblings {
		if m.State != command.SiblingStale || !up[m.Node] {
			continue
		}
		reps, heard := reports[m.Node]
		if !heard {
			continue // not heard in this term yet: nothing shows what its disk holds
		}
		r, ok := reps[g.Server]
		rebuilt := !ok || (r.CopyID != "" && r.CopyID != m.StaleCopyID && (m.StaleCopyID != "" || r.Resyncing))
		if rebuilt {
			out = append(out, reviveStale{Server: g.Server, Node: m.Node})
		}
	}
	return out
}

// freshCopy reports whether learner m's node shows a copy that may become a voter: its
// report is not resyncing and, when the member was stale, has another copy ID than the
// stale one (the old copy was wiped).
func freshCopy(g *command.GroupInfo, m command.Member, reports reportSet) bool {
	r, ok := reports.get(m.Node, g.Server)
	if ok && r.Resyncing {
		return false
	}
	if m.StaleCopyID == "" {
		return true
	}
	return ok && r.CopyID != "" && r.CopyID != m.StaleCopyID
}

// copyClock returns the silentFunc of this leader term at now: a copy is silent when its
// node's heartbeats have not reported it for longer than timeout, counting from the start
// of the term at the earliest, so a new leader demotes nobody before it watched for
// timeout itself.
func (t *leaderTerm) copyClock(now time.Time, timeout time.Duration) silentFunc {
	t.mu.Lock()
	seen := make(map[[2]uint16]time.Time, len(t.copySeen))
	for k, v := range t.copySeen {
		seen[k] = v
	}
	t.mu.Unlock()
	since := t.since
	return func(node, server uint16) bool {
		last := since
		if s, ok := seen[[2]uint16{node, server}]; ok && s.After(last) {
			last = s
		}
		return now.Sub(last) > timeout
	}
}
