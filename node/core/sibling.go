package core

import (
	"time"

	"github.com/sibylhq/sibyl/sibling"
)

// Write is what a sibling must make durable, in one write, before it acks: an epoch, a
// truncation of its log's tail, entries to append, a commit point to record. Config is the
// highest config version of the appends it takes (sibling.Append.Config), for the driver
// to record with it; alone it makes no write.
type Write struct {
	Epoch    uint64
	Truncate uint64
	Append   []sibling.Entry
	Commit   uint64
	Config   uint64
}

func (w *Write) empty() bool {
	return w.Epoch == 0 && w.Truncate == 0 && len(w.Append) == 0 && w.Commit == 0
}

// Step runs appends that arrived together through the sibling's core. The driver makes
// every returned Write durable in order, reporting each with Written, and only then sends
// the acks. A truncation starts a new Write so that each one is a single store batch.
// authorize says whether the directory names main as the group's main in epoch. An append
// that breaks an invariant stops the role (a RoleChange with the Violation).
func (c *Group) Step(msgs []*sibling.Append, authorize sibling.Authorize, now time.Time) ([]Write, []*sibling.Ack) {
	if c.role != Sibling {
		// Not following a main (yet, or any more): say nothing rather than describe a log
		// this copy does not stand behind. The main probes again on its next heartbeat.
		return nil, nil
	}
	var writes []Write
	w := Write{}
	acks := make([]*sibling.Ack, 0, len(msgs))
	for _, m := range msgs {
		st := c.follower.Step(m, authorize)
		if st.Violation != nil {
			c.role, c.follower = None, nil
			c.rd.Roles = append(c.rd.Roles, RoleChange{From: Sibling, To: None, Epoch: c.epoch, Violation: st.Violation})
			return writes, nil
		}
		if st.Truncate > 0 && (len(w.Append) > 0 || w.Truncate > 0) {
			writes = append(writes, w)
			w = Write{Config: w.Config}
		}
		w.Epoch = max(w.Epoch, st.Epoch)
		if st.Truncate > 0 {
			w.Truncate = st.Truncate
		}
		w.Append = append(w.Append, st.Append...)
		w.Commit = max(w.Commit, st.Commit)
		if st.Ack.OK {
			w.Config = max(w.Config, m.Config)
		}
		if st.Ack.OK && st.Ack.Epoch == c.epoch {
			c.lastHeard = now
		}
		ack := st.Ack
		acks = append(acks, &ack)
	}
	if !w.empty() {
		writes = append(writes, w)
	}
	return writes, acks
}

// Written reports a Write of Step durable: its commit point is now the copy's.
func (c *Group) Written(w *Write) {
	c.commit = max(c.commit, w.Commit)
}
