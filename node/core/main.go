package core

import (
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// Propose appends eff as the main's next entry and returns its seq. The entry is in the
// next Ready; it counts toward nothing until the driver reports it durable (Persisted).
// Call only as main.
func (c *Group) Propose(eff *command.Effect) uint64 {
	epoch, seq := c.main.Assign()
	if eff.Dedupe != nil {
		eff.Dedupe.Epoch, eff.Dedupe.Seq = epoch, seq
	}
	data, err := command.EncodeEffect(eff)
	if err != nil {
		// Effects are built from validated input; failing to encode one is a bug.
		panic(err)
	}
	c.rd.Entries = append(c.rd.Entries, Proposal{Entry: sibling.Entry{Epoch: epoch, Seq: seq, Data: data}, Effect: eff})
	return seq
}

// NewEpoch is the epoch the main's next write must make durable (0: none): a main new to
// its epoch records it with its first write.
func (c *Group) NewEpoch() uint64 {
	if c.role != Main {
		return 0
	}
	return c.newEpoch
}

// Persisted reports a write of the main's own log: durable through seq (0: no entries),
// with epoch (0: none) recorded.
func (c *Group) Persisted(epoch, seq uint64) {
	if c.role != Main {
		return
	}
	if epoch != 0 && c.newEpoch == epoch {
		c.newEpoch = 0
	}
	if seq > 0 {
		c.main.Persisted(seq)
	}
	c.noteCommit()
}

// HandleAcks applies answers from siblings that arrived together. An answer from a higher
// epoch fences the main: it steps down.
func (c *Group) HandleAcks(acks []*sibling.Ack, now time.Time) {
	for _, a := range acks {
		if c.role != Main || a.Group != c.cfg.Group {
			return
		}
		c.lastAck[a.From] = now
		c.main.HandleAck(*a)
		if e := c.main.Fenced(); e > 0 {
			c.fencedBy = max(c.fencedBy, e)
			c.stepDown(command.Errorf(command.CodeNoMain, "group %d: main was fenced by epoch %d", c.cfg.Group, e))
			return
		}
		c.rd.Woken = append(c.rd.Woken, a.From)
	}
	c.noteCommit()
}

// noteCommit follows a move of the main's commit point: a config whose entry committed is
// activated.
func (c *Group) noteCommit() {
	n := c.main.Commit()
	if n <= c.commit {
		return
	}
	if c.rd.CommitTo == 0 {
		c.rd.CommitFrom = c.commit
	}
	c.commit, c.rd.CommitTo = n, n
	if c.configSeq != 0 && n >= c.configSeq && c.configVer > c.activated {
		c.activated = c.configVer
	}
}
