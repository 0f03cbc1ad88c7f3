package core

import (
	"fmt"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// Follow takes the role the directory record gi gives this copy. isSibling says whether gi
// lists the copy as a (non-stale) sibling; the driver handles stale copies itself. disk
// reads the copy's durable state and is called only when the copy takes a new role. now
// stamps the main's barrier and the siblings it starts hearing from.
func (c *Group) Follow(gi *command.GroupInfo, isSibling bool, disk func() (Disk, error), now time.Time) error {
	self := c.cfg.Self
	switch {
	case gi.Main == self && gi.Epoch < c.fencedBy:
		// Siblings already sealed a later epoch: acting as main of this one would only be
		// refused. Wait for the directory to catch up with the promotion under way.
	case gi.Main == self && (c.role != Main || c.epoch != gi.Epoch):
		if c.role == Main {
			c.stepDown(command.Errorf(command.CodeNoMain, "group %d: epoch changed", c.cfg.Group))
		}
		return c.becomeMain(gi, disk, now)
	case gi.Main == self:
		c.setConfig(gi, now)
	case isSibling && (c.role != Sibling || c.epoch != gi.Epoch):
		return c.becomeSibling(gi, disk)
	case !isSibling && gi.Main != self && c.role == Main:
		c.stepDown(command.Errorf(command.CodeNoMain, "group %d: main moved to node %d", c.cfg.Group, gi.Main))
	case !isSibling && gi.Main != self && c.role == Sibling:
		// Removed from the group: the copy stays on disk but serves nothing.
		c.role, c.follower = None, nil
		c.rd.Roles = append(c.rd.Roles, RoleChange{From: Sibling, To: None, Epoch: c.epoch})
	}
	return nil
}

// quorumOf turns a directory record into the quorum a main must satisfy and its learners.
func quorumOf(gi *command.GroupInfo) (sibling.Quorum, []uint16) {
	q := sibling.Quorum{Version: gi.Active.Version, Sets: [][]uint16{gi.Active.Voters}}
	voting := map[uint16]bool{}
	for _, v := range gi.Active.Voters {
		voting[v] = true
	}
	if gi.Pending != nil {
		q.Version = gi.Pending.Version
		q.Sets = append(q.Sets, gi.Pending.Voters)
		for _, v := range gi.Pending.Voters {
			voting[v] = true
		}
	}
	var learners []uint16
	for _, m := range gi.Siblings {
		// Only syncing members are learners: a stale copy (command.SiblingStale) gets nothing.
		if !voting[m.Node] && m.State == command.SiblingSyncing {
			learners = append(learners, m.Node)
		}
	}
	return q, learners
}

// becomeMain starts the main role in the directory's epoch. A main new to the epoch writes a
// barrier entry first; until it commits, entries inherited from older epochs are not known
// committed (docs/replication.md case 3).
func (c *Group) becomeMain(gi *command.GroupInfo, disk func() (Disk, error), now time.Time) error {
	d, err := disk()
	if err != nil {
		return err
	}
	if d.LastSeq == 0 && gi.Epoch > 1 && len(gi.Voters()) > 0 {
		// Past its first epoch a group's main has written entries, and its voters copied
		// them, so an empty copy lost its disk (a wipe the incarnation counter did not
		// reveal). Serving would write a barrier at seq 1 over what the voters committed;
		// staying silent lets the controller promote one of them.
		return fmt.Errorf("group %d: the copy is empty while the group has voters %v; not serving as main of epoch %d",
			c.cfg.Group, gi.Voters(), gi.Epoch)
	}
	if d.Epoch > gi.Epoch {
		// The copy promised a later epoch (a seal, or a main role of a later epoch): this
		// record is of a replaced home (docs/locations.md "Moving a home"), which gave the
		// restarted node a fresh epoch of its older band. Serving would append entries of
		// the earlier epoch after the later epoch's in the log.
		return fmt.Errorf("group %d: the copy promised epoch %d; not serving as main of the earlier epoch %d",
			c.cfg.Group, d.Epoch, gi.Epoch)
	}
	epochFirst := d.LastSeq + 1
	history := append([]sibling.EpochStart(nil), d.History...)
	barrier := d.Epoch < gi.Epoch || d.LastEpoch < gi.Epoch
	c.newEpoch = 0
	if barrier {
		history = append(history, sibling.EpochStart{Epoch: gi.Epoch, FirstSeq: epochFirst})
		c.newEpoch = gi.Epoch
	} else {
		for _, h := range history {
			if h.Epoch == gi.Epoch {
				epochFirst = h.FirstSeq
			}
		}
	}
	q, learners := quorumOf(gi)
	// A main that goes on into a fresh epoch (an abandoned attempt fenced it) knows more
	// is committed than its disk says yet: the commit point never goes back.
	c.commit = max(c.commit, d.Commit)
	c.main = sibling.NewMain(sibling.MainConfig{Group: c.cfg.Group, Self: c.cfg.Self, Epoch: gi.Epoch,
		LastEpoch: d.LastEpoch, LastSeq: d.LastSeq, Commit: min(c.commit, d.LastSeq), EpochFirst: epochFirst,
		History: history, Quorum: q, Learners: learners, Log: d.Log, MaxBytes: c.cfg.MaxBytes, Window: c.cfg.Window})
	c.role, c.epoch, c.epochFirst = Main, gi.Epoch, epochFirst
	// The sibling role's follower describes the log as it was before this copy became main:
	// a seal after a step-down must read the log as it is now.
	c.follower, c.lastHeard = nil, time.Time{}
	c.lastAck = map[uint16]time.Time{}
	c.configVer, c.configSeq, c.activated = 0, 0, 0
	c.rd.Roles = append(c.rd.Roles, RoleChange{From: None, To: Main, Epoch: gi.Epoch, Disk: d, Barrier: barrier})
	if barrier {
		seq := c.Propose(&command.Effect{Kind: command.EffectBarrier, At: now.UTC()})
		if gi.Pending != nil {
			// A promotion's config is activated by the barrier committing under it.
			c.configVer, c.configSeq = gi.Pending.Version, seq
		}
	} else if gi.Pending != nil {
		c.configVer = gi.Pending.Version
		c.configSeq = c.Propose(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: now.UTC()})
	}
	c.hearNewPeers(now)
	return nil
}

// setConfig follows a directory change of the group's configs. On a new pending config the
// main switches to the joint quorum at once and writes a config entry; when that entry
// commits it reports the config activated. A config older than the one in use is ignored
// (directories can arrive out of order).
func (c *Group) setConfig(gi *command.GroupInfo, now time.Time) {
	q, learners := quorumOf(gi)
	if !c.main.SetQuorum(q, learners) {
		return
	}
	if gi.Pending != nil && gi.Pending.Version > c.configVer {
		c.configVer = gi.Pending.Version
		c.configSeq = c.Propose(&command.Effect{Kind: command.EffectConfig, Config: gi.Pending.Version, At: now.UTC()})
	}
	c.hearNewPeers(now)
	c.noteCommit()
}

// hearNewPeers counts a sibling as heard when replication to it starts, so a new main does
// not report "no quorum" before its first acks could arrive.
func (c *Group) hearNewPeers(now time.Time) {
	for id := range c.main.Peers() {
		if _, ok := c.lastAck[id]; !ok {
			c.lastAck[id] = now
		}
	}
	c.rd.Peers = true
}

// becomeSibling starts the sibling role: the copy follows the main the directory names.
func (c *Group) becomeSibling(gi *command.GroupInfo, disk func() (Disk, error)) error {
	d, err := disk()
	if err != nil {
		return err
	}
	from := c.role
	if c.role == Main {
		c.stepDown(command.Errorf(command.CodeNoMain, "group %d: main moved to node %d", c.cfg.Group, gi.Main))
		from = None
	}
	c.follower = sibling.NewFollower(sibling.FollowerState{Group: c.cfg.Group, Self: c.cfg.Self, Epoch: d.Epoch,
		LastEpoch: d.LastEpoch, LastSeq: d.LastSeq, Commit: d.Commit, History: d.History, Log: d.Log})
	c.role, c.epoch = Sibling, gi.Epoch
	c.lastHeard = time.Time{}
	c.rd.Roles = append(c.rd.Roles, RoleChange{From: from, To: Sibling, Epoch: gi.Epoch, Disk: d})
	return nil
}

// stepDown ends the main role. Entries proposed but not yet taken with Ready are dropped
// with it: they were never logged.
func (c *Group) stepDown(reason *command.Error) {
	if c.role != Main {
		return
	}
	c.role, c.main, c.newEpoch, c.lastAck = None, nil, 0, nil
	c.rd.Entries = nil
	c.rd.Roles = append(c.rd.Roles, RoleChange{From: Main, To: None, Epoch: c.epoch, Reason: reason})
}
