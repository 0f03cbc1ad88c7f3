package core

import (
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Report is the copy's line in the heartbeat to the controller, but for what only its
// driver knows (applied, copy ID, resync progress). last gives the durable log's end for a
// copy with no role.
func (c *Group) Report(now time.Time, last func() (epoch, seq uint64)) command.GroupReport {
	r := command.GroupReport{Server: c.cfg.Group, Role: c.role.String(), Epoch: c.epoch, CommitSeq: c.commit}
	switch c.role {
	case Main:
		r.LastSeq, r.LastEpoch, r.Activated = c.main.LastSeq(), c.epoch, c.activated
		peers := c.main.Peers()
		for _, id := range sortedPeers(peers) {
			r.Siblings = append(r.Siblings, command.SiblingProgress{Node: id, Seq: peers[id].Match,
				Recent: now.Sub(c.lastAck[id]) < c.cfg.DownAfter})
		}
	case Sibling:
		r.LastEpoch, r.LastSeq = c.follower.Last()
	default:
		r.LastEpoch, r.LastSeq = last()
	}
	return r
}
