package location

import (
	"slices"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The admin calls the leader is running (registrations and drains), for the progress bars
// of /v1/status and the page. A registration's progress is read from the directory and the
// main's report when the status is built; a drain counts its own steps. They live in the
// controller's memory only: an admin call ends with the leadership it runs under.

// operation is one running admin call.
type operation struct {
	id      uint64
	op      string // command.OperationRegister or command.OperationDrain
	server  uint16 // registerSibling only
	node    uint16
	started time.Time
	// A drain's step (phase) and its groups moved of the groups to move.
	phase       string
	done, total uint64
}

// operations is the set of running calls. The zero value is ready.
type operations struct {
	mu   sync.Mutex
	next uint64
	ops  map[uint64]*operation
}

// start records a running call and returns its id and the function that ends it.
func (o *operations) start(op operation) (id uint64, end func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ops == nil {
		o.ops = map[uint64]*operation{}
	}
	o.next++
	op.id = o.next
	o.ops[op.id] = &op
	return op.id, func() {
		o.mu.Lock()
		delete(o.ops, op.id)
		o.mu.Unlock()
	}
}

// step sets drain id's progress.
func (o *operations) step(id uint64, phase string, done, total uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if op := o.ops[id]; op != nil {
		op.phase, op.done, op.total = phase, done, total
	}
}

// list returns copies of the running calls, oldest first.
func (o *operations) list() []operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]operation, 0, len(o.ops))
	for _, op := range o.ops {
		out = append(out, *op)
	}
	slices.SortFunc(out, func(a, b operation) int { return int(a.id) - int(b.id) })
	return out
}

// statusOperations renders ops against the status groups built from the same state: a
// registration is in "sync" until the copy holds something and while a snapshot goes to it
// (bytes), in "replay" while it catches up from the log (entries of the main's last seq), in
// "vote" once it is caught up and waits to become a voter.
func statusOperations(ops []operation, groups []command.StatusGroup) []command.StatusOperation {
	out := make([]command.StatusOperation, 0, len(ops))
	for _, op := range ops {
		so := command.StatusOperation{Op: op.op, Server: op.server, Node: op.node, StartedMs: op.started.UnixMilli(),
			Phase: op.phase, Done: op.done, Total: op.total, Unit: "groups"}
		if op.op == command.OperationRegister {
			so.Phase, so.Unit = "sync", "bytes"
			if sib, seq, ok := statusSibling(groups, op.server, op.node); ok {
				switch {
				case sib.SyncTotal > 0:
					so.Done, so.Total = sib.SyncDone, sib.SyncTotal
				case sib.State == command.SiblingVoting:
					so.Phase, so.Unit, so.Done, so.Total = "vote", "entries", seq, seq
				case seq-min(sib.LagSeq, seq) == 0 && sib.LagSeq > catchUpLag:
					// The copy holds nothing yet: the main is still finding out whether it
					// needs a snapshot, so the sync phase goes on.
				default:
					so.Phase, so.Unit, so.Done, so.Total = "replay", "entries", seq-min(sib.LagSeq, seq), seq
					if sib.LagSeq <= catchUpLag {
						so.Phase = "vote"
					}
				}
			}
		}
		out = append(out, so)
	}
	return out
}

// statusSibling finds node among group server's siblings, with the group's seq.
func statusSibling(groups []command.StatusGroup, server, node uint16) (command.StatusSibling, uint64, bool) {
	for _, g := range groups {
		if g.Server != server {
			continue
		}
		for _, s := range g.Siblings {
			if s.Node == node {
				return s, g.Seq, true
			}
		}
	}
	return command.StatusSibling{}, 0, false
}
