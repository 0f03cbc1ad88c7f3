package core

import (
	"errors"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// Reasons a copy refuses a seal; the controller takes either for "this copy still has a
// main" and does not count it.
var (
	ErrSealMain  = errors.New("this node is the group's main")
	ErrSealHears = errors.New("this copy still hears the main")
)

// CheckSeal says whether the copy may be sealed for req now. An automatic seal is refused
// while this copy still hears the main it would replace (docs/replication.md case 7);
// streamOpen says whether the main's replication connection is still open.
func (c *Group) CheckSeal(req *command.SealRequest, streamOpen bool, now time.Time) error {
	if c.role == Main {
		return ErrSealMain
	}
	if req.Auto && streamOpen && !c.lastHeard.IsZero() && now.Sub(c.lastHeard) < c.cfg.DownAfter {
		return ErrSealHears
	}
	return nil
}

// Seal seals the copy at epoch, which the driver made durable first (d is the copy's state
// after that write): from now on its core refuses mains of older epochs. It returns the
// copy's last entry and commit point for the controller's choice.
func (c *Group) Seal(epoch uint64, d Disk) (lastEpoch, lastSeq, commit uint64) {
	if c.follower == nil {
		c.follower = sibling.NewFollower(sibling.FollowerState{Group: c.cfg.Group, Self: c.cfg.Self,
			Epoch: d.Epoch, LastEpoch: d.LastEpoch, LastSeq: d.LastSeq, Commit: d.Commit, History: d.History, Log: d.Log})
	}
	c.follower.Seal(epoch)
	c.sealed = max(c.sealed, epoch)
	lastEpoch, lastSeq = c.follower.Last()
	return lastEpoch, lastSeq, c.follower.Commit()
}
