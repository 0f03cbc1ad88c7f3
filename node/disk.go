package node

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// A node whose store cannot write or fsync (a full disk, an I/O error) is degraded
// (docs/protocol.md §7, docs/storage.md "Disk faults"):
//
//   - the store refuses every write with store.ErrDiskFault, so no copy acknowledges or
//     counts anything it did not make durable, and keeps retrying its disk by itself;
//   - the node stops every role it plays (a main's waiting writes fail with unavailable,
//     retryable) and takes none while degraded; it reports the fault in its heartbeats
//     (the controllers show the node "degraded" with the reason, and replace it as main
//     after down-after), and /healthz answers 503;
//   - when the store works again the node joins the controllers as a new life of itself
//     (a new instance, the next incarnation), which gives every group it is still main
//     of a fresh epoch: a main that lost entries it had sent never continues the epoch it
//     sent them in. Only then does it take roles again.

// diskState is the node's view of its store's disk.
type diskState struct {
	mu sync.Mutex
	// fault is the store's disk fault as last seen (nil: the disk works).
	fault error
	since time.Time
	// held: roles are held from the first sight of a fault until a join after the disk
	// healed; heldBelow: directories below this index are held too (a directory fetched
	// before that join may still name this node main in the epoch it lost).
	held      bool
	heldBelow uint64
	stopped   bool   // the roles were stopped for the current hold
	rejoin    bool   // the disk healed: join again as a new life
	faults    uint64 // faults seen, so a join that raced one does not release the hold
	kick      chan struct{}
}

func newDiskState() *diskState { return &diskState{kick: make(chan struct{}, 1)} }

// health is the store's disk reporter, nil when the store has none (the memory store).
func (n *Node) health() store.Health {
	h, _ := n.store.(store.Health)
	return h
}

// diskFault is the store's disk fault now, or nil.
func (n *Node) diskFault() error {
	if h := n.health(); h != nil {
		f, _ := h.Fault()
		return f
	}
	return nil
}

// degradedReason is why the node is degraded ("" when it is not), for its heartbeats.
func (n *Node) degradedReason() string {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	if n.disk.fault == nil {
		return ""
	}
	return n.disk.fault.Error()
}

// noteDiskFault records a write that failed for the disk: from now on no copy takes a role
// until the disk heals and the node joined again. Safe to call with a group's lock held.
func (n *Node) noteDiskFault(err error) {
	if !errors.Is(err, store.ErrDiskFault) {
		return
	}
	d := n.disk
	d.mu.Lock()
	news := d.fault == nil || !d.held
	if d.fault == nil {
		d.fault, d.since = err, time.Now()
		n.metrics.diskFaults.Inc()
		n.metrics.diskDegraded.Set(1)
		n.log.Error().Err(err).Msg("the disk failed: this node is degraded; it serves no group until the disk works again")
	}
	if !d.held {
		d.held, d.stopped, d.rejoin = true, false, false
		d.faults++
	}
	d.mu.Unlock()
	if !news {
		return
	}
	select {
	case d.kick <- struct{}{}: // the disk loop stops the roles
	default:
	}
}

// rolesHeld reports whether copies may take roles from a directory of the given index.
func (n *Node) rolesHeld(index uint64) bool {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	return n.disk.held || index < n.disk.heldBelow
}

// diskLoop follows the store's disk: on a fault it stops every role, and when the disk
// works again it asks the run loop to join as a new life (which releases the hold).
func (n *Node) diskLoop() {
	defer n.wg.Done()
	h := n.health()
	for {
		var changed <-chan struct{}
		if h != nil {
			var fault error
			fault, changed = h.Fault()
			if fault != nil {
				n.noteDiskFault(fault)
			}
			n.followDisk(fault)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		case <-n.disk.kick:
		}
	}
}

// followDisk acts on the store's fault as seen now: stop the roles of a new hold, and once
// the disk works, note that a join is due.
func (n *Node) followDisk(fault error) {
	d := n.disk
	d.mu.Lock()
	stop := d.held && !d.stopped
	d.stopped = d.stopped || stop
	var healed time.Duration
	if fault == nil && d.fault != nil {
		healed = time.Since(d.since)
		d.fault, d.rejoin = nil, true
		n.metrics.diskDegraded.Set(0)
	}
	d.mu.Unlock()
	if stop {
		n.stopRolesForDisk(fault)
	}
	if healed > 0 {
		n.log.Warn().Dur("degradedFor", healed).Msg("the disk works again; joining as a new life of this node before serving")
	}
}

// stopRolesForDisk ends every role this node plays: a main's waiting writes fail with
// unavailable (their outcome is unknown; they are retryable).
func (n *Node) stopRolesForDisk(fault error) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	reason := command.Errorf(command.CodeUnavailable, "node %d's disk failed; retry (the group's main moves or the disk heals): %v",
		n.cfg.ID, fault)
	n.mu.RLock()
	groups := make([]*group, 0, len(n.groups))
	for _, g := range n.groups {
		groups = append(groups, g)
	}
	n.mu.RUnlock()
	for _, g := range groups {
		g.mu.Lock()
		g.c.Stop(reason)
		g.drain()
		g.mu.Unlock()
	}
}

// rejoinDue reports whether the disk healed and the node must join again; called by the
// run loop, which alone changes the node's instance and incarnation.
func (n *Node) rejoinDue() bool {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	return n.disk.rejoin && n.disk.fault == nil
}

// newLife makes this process a new instance with the next incarnation, persisted first:
// the controllers take its next join for a restart and give the groups it is main of a
// fresh epoch. Called only from the run loop.
func (n *Node) newLife() error {
	inc := n.incarnation + 1
	if n.cfg.DataDir != "" {
		if err := writeIncarnation(filepath.Join(n.cfg.DataDir, "incarnation"), inc); err != nil {
			return fmt.Errorf("new life after a disk fault: %w", err)
		}
	}
	n.incarnation, n.instance = inc, ulid.Make().String()
	n.log.Info().Str("instance", n.instance).Uint64("incarnation", inc).Msg("new life after a disk fault")
	return nil
}

// joinedAt releases a hold once a join answered with directory index, unless another fault
// came meanwhile (faults is the count before the join was sent).
func (n *Node) joinedAt(index, faults uint64) {
	d := n.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held && d.fault == nil && d.rejoin && d.faults == faults {
		d.held, d.rejoin, d.heldBelow = false, false, index
	}
}

func (n *Node) diskFaults() uint64 {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	return n.disk.faults
}
