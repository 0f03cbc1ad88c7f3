package location

import "time"

// Registration backoff. When a main gives up registering a copy (its log hold passed a
// bound, docs/register-sibling.md), the learner is dropped; the reconcile loop of an
// automatically managed group would otherwise add the same node again in its next round,
// and a copy that cannot keep up would be sent snapshot after snapshot. So the leader
// waits before it adds that node to that group again: 5 s after the first abort, doubling
// with each abort in a row, at most 5 minutes. A registration that succeeds (the node
// becomes a voter) clears the count. The waits belong to the leader's term: a new leader
// starts without them, which costs at most one more attempt per copy.

const (
	firstRegisterBackoff = 5 * time.Second
	maxRegisterBackoff   = 5 * time.Minute
)

// registerBackoff is the wait before node is added to a group again after aborts
// registrations in a row were given up.
func registerBackoff(aborts int) time.Duration {
	d := firstRegisterBackoff
	for i := 1; i < aborts && d < maxRegisterBackoff; i++ {
		d *= 2
	}
	return min(d, maxRegisterBackoff)
}

// backoffState is one {group, node}'s record of given-up registrations.
type backoffState struct {
	aborts int
	until  time.Time
}

// withoutBackedOff returns cmds without the addLearner commands that waiting says must
// wait; every other command is kept in order.
func withoutBackedOff(cmds []dirCommand, waiting func(server, node uint16) bool) []dirCommand {
	out := cmds[:0:0]
	for _, c := range cmds {
		if a, ok := c.(addLearner); ok && waiting(a.Server, a.Node) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// noteRegisterAbort starts or lengthens the wait of node in group server after its
// registration was given up at now.
func (t *leaderTerm) noteRegisterAbort(server, node uint16, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := [2]uint16{server, node}
	b := t.backoffs[k]
	b.aborts++
	wait := registerBackoff(b.aborts)
	b.until = now.Add(wait)
	t.backoffs[k] = b
	return wait
}

// clearRegisterBackoff forgets the given-up registrations of node in group server: it
// became a voter.
func (t *leaderTerm) clearRegisterBackoff(server, node uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.backoffs, [2]uint16{server, node})
}

// registerWaiting reports, at now, whether node must not be added to group server yet.
func (t *leaderTerm) registerWaiting(now time.Time) func(server, node uint16) bool {
	return func(server, node uint16) bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		b, ok := t.backoffs[[2]uint16{server, node}]
		return ok && now.Before(b.until)
	}
}
