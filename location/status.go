package location

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// proxiedHeader marks a /v1/status request one controller forwarded to another; the
// receiver answers from its own state, so a stale leader address can never cause a loop.
const proxiedHeader = "X-Sibyl-Proxied"

// statusInput is everything buildStatus reads; it holds no locks or sockets.
type statusInput struct {
	st        *dirState
	location  string // this controller's location
	members   []raftMember
	leader    string // raft ID of the leader, "" if none
	nodeState func(nodeRecord) (string, uint64)
	// reason says why a degraded node's disk fails (nil: no leader memory).
	reason  func(node uint16) string
	reports reportSet
	silent  silentFunc // copies unreported for copy-timeout (the leader's clock); nil: none
	// remote: the other locations as the ads show them; a node of theirs counts as up while
	// its ad is younger than nodeFresh.
	remote    []locationView
	nodeFresh time.Duration
	ops       []operation // admin calls running at the leader
}

// twoVotersWarning is set on a group with exactly two voting siblings.
const twoVotersWarning = "2 voting siblings: a write needs both (W=2), so one sibling failure stops writes; add a third"

// buildStatus renders the /v1/status object.
func buildStatus(in statusInput) command.Status {
	out := command.Status{
		Locations: []command.StatusLocation{}, Controllers: []command.StatusController{},
		Nodes: []command.StatusNode{}, Groups: []command.StatusGroup{},
		Promotions: statusPromotions(in.st.Promotions),
	}
	// Controllers: the registered ones, plus raft members that have not registered yet
	// (their HTTP address is unknown, their location is this one).
	ctrls := in.st.sortedControllers()
	for _, m := range in.members {
		if _, ok := in.st.Controllers[m.ID]; !ok {
			ctrls = append(ctrls, controllerRecord{ID: m.ID, RaftAddr: m.Addr, Location: in.location})
		}
	}
	slices.SortFunc(ctrls, func(a, b controllerRecord) int {
		if a.Location != b.Location {
			return cmpString(a.Location, b.Location)
		}
		return cmpString(a.ID, b.ID)
	})
	for _, c := range ctrls {
		out.Controllers = append(out.Controllers, command.StatusController{
			ID: c.ID, Addr: c.HTTPAddr, Location: c.Location, Leader: c.ID == in.leader,
		})
		if n := len(out.Locations); n == 0 || out.Locations[n-1].Name != c.Location {
			out.Locations = append(out.Locations, command.StatusLocation{Name: c.Location, Controllers: []string{}})
		}
		loc := &out.Locations[len(out.Locations)-1]
		loc.Controllers = append(loc.Controllers, c.ID)
	}
	for i := range out.Locations {
		if l := &out.Locations[i]; l.Name == in.location && in.leader != "" {
			leader := in.leader
			l.Leader, l.Reachable = &leader, true
		}
	}
	var remoteNodes []command.StatusNode
	for _, v := range in.remote {
		sl := command.StatusLocation{Name: v.Name, Controllers: []string{}, Reachable: v.Reachable}
		if v.LeaderID != "" {
			leader := v.LeaderID
			sl.Leader = &leader
		}
		for _, ad := range v.Controllers {
			sl.Controllers = append(sl.Controllers, ad.ID)
			out.Controllers = append(out.Controllers, command.StatusController{
				ID: ad.ID, Addr: ad.Addr, Location: ad.Location, Leader: ad.ID == v.LeaderID,
			})
		}
		out.Locations = append(out.Locations, sl)
		for _, ad := range v.Nodes {
			id, err := strconv.ParseUint(ad.ID, 10, 16)
			if err != nil {
				continue
			}
			state := command.NodeDown
			if time.Duration(ad.AgeMs)*time.Millisecond < in.nodeFresh {
				state = command.NodeUp
			}
			remoteNodes = append(remoteNodes, command.StatusNode{
				ID: uint16(id), Addr: ad.Addr, Location: ad.Location, State: state, Instance: ad.Instance, Generation: ad.Generation,
			})
		}
	}
	slices.SortStableFunc(out.Locations, func(a, b command.StatusLocation) int { return cmpString(a.Name, b.Name) })
	slices.SortStableFunc(out.Controllers, func(a, b command.StatusController) int {
		if a.Location != b.Location {
			return cmpString(a.Location, b.Location)
		}
		return cmpString(a.ID, b.ID)
	})

	up := map[uint16]bool{}
	advertised := map[uint16]bool{}
	for _, n := range remoteNodes {
		advertised[n.ID] = true
	}
	for _, n := range in.st.sortedNodes() {
		state, gen := in.nodeState(n)
		up[n.ID] = state == command.NodeUp
		if n.Location != "" && n.Location != in.location && advertised[n.ID] {
			continue // a guest of another location: listed once, from its own location's ads
		}
		sn := command.StatusNode{ID: n.ID, Addr: n.Addr, Location: n.Location, State: state, Instance: n.Instance, Generation: gen}
		if state == command.NodeDegraded && in.reason != nil {
			sn.Reason = in.reason(n.ID)
		}
		out.Nodes = append(out.Nodes, sn)
	}
	if len(remoteNodes) > 0 {
		out.Nodes = append(out.Nodes, remoteNodes...)
		slices.SortStableFunc(out.Nodes, func(a, b command.StatusNode) int { return int(a.ID) - int(b.ID) })
	}

	for _, g := range in.st.sortedGroups() {
		sg := command.StatusGroup{Server: g.Server, Home: in.location, Epoch: g.Epoch, Siblings: []command.StatusSibling{}}
		if g.Main != 0 {
			main := g.Main
			sg.Main = &main
		}
		mainRep, hasMain := mainReport(&g, in.reports)
		if hasMain {
			sg.Seq, sg.Load = mainRep.LastSeq, mainRep.Load
		}
		_, blocked := planDemotion(&g, up, in.reports, in.silent)
		voting := 0
		var warnings []string
		for _, m := range g.Siblings {
			if m.State == command.SiblingVoting {
				voting++
			}
			ss := command.StatusSibling{
				Node: m.Node, State: m.State, LagSeq: siblingLag(g.Server, m.Node, sg.Seq, mainRep, in.reports),
			}
			for _, p := range mainRep.Siblings {
				if p.Node == m.Node {
					ss.SyncDone, ss.SyncTotal = p.SyncDone, p.SyncTotal
				}
			}
			if m.State == command.SiblingStale {
				// docs/protocol.md's enum has no "stale": it is a syncing copy with the extra flag.
				ss.State, ss.Stale = command.SiblingSyncing, true
			}
			if slices.Contains(blocked, m.Node) {
				ss.Unreachable = true
				warnings = append(warnings, fmt.Sprintf("the copy on node %d was not reported for copy-timeout but stays voting: demoting it would leave no write quorum", m.Node))
			}
			sg.Siblings = append(sg.Siblings, ss)
		}
		if voting == 2 {
			warnings = append(warnings, twoVotersWarning)
		}
		sg.Warning = strings.Join(warnings, "; ")
		out.Groups = append(out.Groups, sg)
	}
	out.Operations = statusOperations(in.ops, out.Groups)
	out.Moved = in.st.sortedMoved()
	return out
}

// siblingLag is the main's last seq minus the sibling's own reported applied seq, or, when
// the sibling did not report, minus the seq the main saw it ack; without either, all of it.
func siblingLag(server, node uint16, mainSeq uint64, mainRep command.GroupReport, reports reportSet) uint64 {
	behind := func(seq uint64) uint64 {
		if seq >= mainSeq {
			return 0
		}
		return mainSeq - seq
	}
	if r, ok := reports.get(node, server); ok && r.Role == command.RoleSibling {
		return behind(r.Applied)
	}
	for _, p := range mainRep.Siblings {
		if p.Node == node {
			return behind(p.Seq)
		}
	}
	return mainSeq
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// localStatus builds the status from this controller's own state: with the leader's
// memory when it leads, else from its FSM alone (node liveness unknown, reported down).
func (c *Controller) localStatus() command.Status {
	st, _ := c.fsm.view()
	members, err := c.cons.members()
	if err != nil {
		c.log.Debug().Err(err).Msg("status without raft membership")
	}
	in := statusInput{
		st: st, location: c.cfg.Location, members: members, leader: c.cons.leaderID(),
		nodeState: c.unknownState, reports: reportSet{},
	}
	now := c.now()
	in.remote, in.nodeFresh = c.remoteLocations(now), 3*c.cfg.AdEvery
	if t := c.term.Load(); t != nil && t.isReady() {
		in.nodeState = func(n nodeRecord) (string, uint64) {
			state, gen := t.nodeState(n, now, c.cfg.DownAfter)
			if (state == command.NodeUp || state == command.NodeDegraded) && t.promo.isDead(n.ID) {
				// A probe found nothing listening: the operator sees it down before its
				// heartbeats are overdue (the directory waits for them).
				state = command.NodeDown
			}
			return state, gen
		}
		in.reason = func(node uint16) string { r, _ := t.degradedFor(node, now); return r }
		in.reports = t.snapshotReports()
		in.silent = t.copyClock(now, c.cfg.CopyTimeout)
		in.ops = c.ops.list()
	}
	return buildStatus(in)
}

// handleStatus serves /v1/status: the leader answers itself; a follower proxies to the
// leader and falls back to its own state when there is none or it does not answer.
func (c *Controller) handleStatus(w http.ResponseWriter, r *http.Request) {
	if c.IsLeader() || r.Header.Get(proxiedHeader) != "" {
		writeJSON(w, http.StatusOK, c.localStatus())
		return
	}
	if body, ok := c.leaderStatus(r.Context()); ok {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return
	}
	writeJSON(w, http.StatusOK, c.localStatus())
}

// leaderStatus fetches /v1/status from the leader when another controller leads.
func (c *Controller) leaderStatus(ctx context.Context) ([]byte, bool) {
	id := c.cons.leaderID()
	if id == "" || id == c.cfg.ID {
		return nil, false
	}
	rec, ok := c.fsm.controller(id)
	if !ok {
		return nil, false
	}
	body, err := c.fetchStatus(ctx, rec.HTTPAddr)
	if err != nil {
		c.log.Debug().Err(err).Str("leader", id).Msg("status proxy failed; answering from local state")
		return nil, false
	}
	return body, true
}

// pageStatus is the status page's source: what GET /v1/status answers.
func (c *Controller) pageStatus(ctx context.Context) (*command.Status, error) {
	if !c.IsLeader() {
		if body, ok := c.leaderStatus(ctx); ok {
			var st command.Status
			if err := json.Unmarshal(body, &st); err == nil {
				return &st, nil
			}
		}
	}
	st := c.localStatus()
	return &st, nil
}

// pokeStreamLoop refreshes the open status pages at every directory change, so a
// promotion shows within a round trip rather than a poll.
func (c *Controller) pokeStreamLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.fsm.changes():
			c.stream.Poke()
		case <-c.ctx.Done():
			return
		}
	}
}

// CloseStreams ends the open status streams (GET /v1/status/stream), which an HTTP
// server's Shutdown would otherwise wait for.
func (c *Controller) CloseStreams() error {
	c.stream.Close()
	return nil
}

// fetchStatus gets /v1/status from the controller at addr and checks that it decodes.
func (c *Controller) fetchStatus(ctx context.Context, addr string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(addr, pathStatus), nil)
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", addr, err)
	}
	req.Header.Set(proxiedHeader, c.cfg.ID)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("status from %s: read: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: HTTP %d", addr, resp.StatusCode)
	}
	var s command.Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("status from %s: decode: %w", addr, err)
	}
	return body, nil
}
