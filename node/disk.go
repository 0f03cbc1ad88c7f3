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
	// held: roles are held from the first sight of a fault until the own location's
	// controllers answered a join of the new life after the disk healed.
	held    bool
	stopped bool   // the roles were stopped for the current hold
	rejoin  bool   // the disk healed: join again as a new life
	faults  uint64 // faults seen, so a join that raced one does not release the hold
	// life is the instance of the last new life ("" before any); joined, by location, the
	// directory index of that location's answer to a join of it. A location's groups take
	// roles only from its directories from that index on: one fetched before may still name
	// this node main in the epoch it lost. A location not yet joined again (its heartbeat
	// is refused for the new instance, and its link joins) holds its groups' roles.
	life   string
	joined map[string]uint64
	kick   chan struct{}
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

// rolesHeld reports whether copies of groups homed in location loc may not take roles from
// loc's directory of the given index.
func (n *Node) rolesHeld(loc string, index uint64) bool {
	d := n.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held {
		return true
	}
	if d.life == "" {
		return false // no disk fault since the process started
	}
	from, ok := d.joined[loc]
	return !ok || index < from
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
// own location's heartbeat loop, which alone starts a new life.
func (n *Node) rejoinDue() bool {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	return n.disk.rejoin && n.disk.fault == nil
}

// newLife makes this process a new instance with the next incarnation, persisted first:
// the controllers of every location take its next join for a restart and give the groups
// it is main of a fresh epoch. Called only from the own location's heartbeat loop.
func (n *Node) newLife() error {
	n.incMu.Lock()
	defer n.incMu.Unlock()
	inc := n.incarnation.Load() + 1
	if n.cfg.DataDir != "" {
		if err := writeIncarnation(filepath.Join(n.cfg.DataDir, "incarnation"), inc); err != nil {
			return fmt.Errorf("new life after a disk fault: %w", err)
		}
	}
	n.incarnation.Store(inc)
	n.instance = ulid.Make().String()
	n.disk.mu.Lock()
	n.disk.life, n.disk.joined = n.instance, map[string]uint64{}
	n.disk.mu.Unlock()
	n.log.Info().Str("instance", n.instance).Uint64("incarnation", inc).Msg("new life after a disk fault")
	return nil
}

// identity is the instance and incarnation this process presents to the controllers.
func (n *Node) identity() (string, uint64) {
	n.incMu.Lock()
	defer n.incMu.Unlock()
	return n.instance, n.incarnation.Load()
}

// joinIdentity is identity for a join, with whether this instance adopted a recorded
// incarnation above its own (its data directory was wiped or replaced).
func (n *Node) joinIdentity() (instance string, incarnation uint64, wiped bool) {
	n.incMu.Lock()
	defer n.incMu.Unlock()
	return n.instance, n.incarnation.Load(), n.adopted != "" && n.adopted == n.instance
}

// joinedAt records that link l's location answered a join sent as instance with directory
// index, unless another fault came meanwhile (faults is the count before the join was
// sent): a join of the new life after a fault lets that location's groups take roles from
// its directories from index on, and the own location's join releases the hold.
func (n *Node) joinedAt(l *link, index, faults uint64, instance string) {
	d := n.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.life == "" || instance != d.life || d.fault != nil || d.faults != faults {
		return
	}
	d.joined[l.loc] = index
	if l.own && d.held && d.rejoin {
		d.held, d.rejoin = false, false
	}
}

func (n *Node) diskFaults() uint64 {
	n.disk.mu.Lock()
	defer n.disk.mu.Unlock()
	return n.disk.faults
}
