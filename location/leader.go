package location

import (
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// leaderTerm is the leader's memory for one stretch of leadership: node liveness and the
// nodes' latest reports. None of it is in raft; a new leader starts with every node up as
// of its election (so it does not declare everyone down at once) and relearns the rest
// from the next heartbeats, which come every down-after/4.
type leaderTerm struct {
	since time.Time
	ready chan struct{} // closed once a barrier applied everything committed before this term
	stop  chan struct{} // closed when leadership ends
	done  chan struct{} // closed when the term's loop has returned
	kick  chan struct{} // asks the reconcile loop for a round now

	mu      sync.Mutex
	seen    map[uint16]liveness
	reports map[uint16]map[uint16]command.GroupReport // node -> server -> latest report
	// copySeen is when a heartbeat last reported each copy, by {node, server}.
	copySeen map[[2]uint16]time.Time

	// verifying is held (one token) across a VerifyLeader round trip and guards verifiedAt.
	// It is a channel rather than a mutex because it is held across network I/O: waiters
	// block on a channel, which testing/synctest counts as idle.
	verifying  chan struct{}
	verifiedAt time.Time

	promo *promotions

	// aborts are the registrations this term dropped because the main gave them up, by
	// {server, node}: registerSibling answers with them (membership.go).
	aborts map[[2]uint16]*command.RegisterAbort
	// backoffs are the waits before a node whose registration was given up is added to
	// that group again, by {server, node} (register_backoff.go).
	backoffs map[[2]uint16]backoffState
}

type liveness struct {
	lastSeen   time.Time
	generation uint64
	// degraded is why the node's disk fails, from its latest heartbeat ("" when it works);
	// degradedSince is when a heartbeat first said so.
	degraded      string
	degradedSince time.Time
}

// verifyCacheFor is how long a successful raft VerifyLeader stands in for another one:
// long enough that a burst of heartbeats costs one round, short against DownAfter.
const verifyCacheFor = 100 * time.Millisecond

func newLeaderTerm(now time.Time) *leaderTerm {
	return &leaderTerm{
		since:     now,
		ready:     make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		seen:      map[uint16]liveness{},
		aborts:    map[[2]uint16]*command.RegisterAbort{},
		backoffs:  map[[2]uint16]backoffState{},
		verifying: make(chan struct{}, 1),

		reports:  map[uint16]map[uint16]command.GroupReport{},
		copySeen: map[[2]uint16]time.Time{},
		promo:    newPromotions(),
	}
}

// isReady reports whether the term finished its barrier and has not ended.
func (t *leaderTerm) isReady() bool {
	select {
	case <-t.stop:
		return false
	default:
	}
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// requestRound asks for a reconcile round without blocking (one pending request suffices).
func (t *leaderTerm) requestRound() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// verify confirms leadership with a quorum, at most once per verifyCacheFor; concurrent
// callers share one verification.
func (t *leaderTerm) verify(c consensus, now func() time.Time) error {
	t.verifying <- struct{}{}
	defer func() { <-t.verifying }()
	if !t.verifiedAt.IsZero() && now().Sub(t.verifiedAt) < verifyCacheFor && c.isLeader() {
		return nil
	}
	if err := c.verifyLeader(); err != nil {
		return err
	}
	t.verifiedAt = now()
	return nil
}

// nodeState computes a node's state and generation as this leader sees it.
func (t *leaderTerm) nodeState(n nodeRecord, now time.Time, downAfter time.Duration) (string, uint64) {
	t.mu.Lock()
	l, ok := t.seen[n.ID]
	t.mu.Unlock()
	last := t.since
	if ok && l.lastSeen.After(last) {
		last = l.lastSeen
	}
	switch {
	case n.Spare:
		return command.NodeSpare, l.generation
	case now.Sub(last) <= downAfter && l.degraded != "":
		return command.NodeDegraded, l.generation
	case now.Sub(last) <= downAfter:
		return command.NodeUp, l.generation
	default:
		return command.NodeDown, l.generation
	}
}

// degradedFor says why node's disk fails and since how long, as its heartbeats report
// ("" when they report none).
func (t *leaderTerm) degradedFor(node uint16, now time.Time) (string, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.seen[node]
	if l.degraded == "" {
		return "", 0
	}
	return l.degraded, now.Sub(l.degradedSince)
}

// heardWithin reports whether node sent a heartbeat (or joined) within d of now.
func (t *leaderTerm) heardWithin(node uint16, now time.Time, d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.seen[node]
	return ok && now.Sub(l.lastSeen) <= d
}

// lastHeard returns when node last heartbeated (or joined) in this term.
func (t *leaderTerm) lastHeard(node uint16) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.seen[node]
	return l.lastSeen, ok
}

// noteJoin records a (re)started node: it is alive now, and whatever its previous process
// reported no longer holds.
func (t *leaderTerm) noteJoin(node uint16, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen[node] = liveness{lastSeen: now}
	delete(t.reports, node)
	t.promo.alive(node)
}

// noteHeartbeat records hb, which the caller matched against the node's directory record.
// A heartbeat older than one already seen (a lower generation, reordered on the way) is
// ignored; it reports false then.
func (t *leaderTerm) noteHeartbeat(hb command.Heartbeat, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.seen[hb.Node]; ok && hb.Generation < l.generation {
		return false
	}
	next := liveness{lastSeen: now, generation: hb.Generation, degraded: hb.Degraded}
	if hb.Degraded != "" {
		next.degradedSince = now
		if l, ok := t.seen[hb.Node]; ok && l.degraded != "" {
			next.degradedSince = l.degradedSince
		}
	}
	t.seen[hb.Node] = next
	t.promo.alive(hb.Node)
	// The report map is replaced, never modified, so snapshots can share it.
	reps := make(map[uint16]command.GroupReport, len(hb.Groups))
	for _, g := range hb.Groups {
		reps[g.Server] = g
		t.copySeen[[2]uint16{hb.Node, g.Server}] = now
	}
	t.reports[hb.Node] = reps
	return true
}

// reportSet is node -> server -> the node's latest report on its copy of that group.
type reportSet map[uint16]map[uint16]command.GroupReport

// get returns node's report on group server.
func (r reportSet) get(node, server uint16) (command.GroupReport, bool) {
	g, ok := r[node][server]
	return g, ok
}

// noteAbort remembers why the learner d dropped was given up.
func (t *leaderTerm) noteAbort(d dropLearner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.aborts[[2]uint16{d.Server, d.Node}] = d.Abort
}

// takeAbort returns (and forgets) why node's registration in group server was given up,
// if this term dropped it.
func (t *leaderTerm) takeAbort(server, node uint16) (*command.RegisterAbort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.aborts[[2]uint16{server, node}]
	delete(t.aborts, [2]uint16{server, node})
	return a, ok
}

// snapshotReports returns the latest reports; the inner maps are shared read-only.
func (t *leaderTerm) snapshotReports() reportSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(reportSet, len(t.reports))
	for k, v := range t.reports {
		out[k] = v
	}
	return out
}
