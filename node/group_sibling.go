package node

import (
	"context"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// becomeSibling starts the sibling role: the copy follows the main the directory names.
// Call with g.mu held.
func (g *group) becomeSibling(gi *command.GroupInfo) error {
	m, err := g.gs.Meta()
	if err != nil {
		return err
	}
	if g.role == roleMain {
		g.stepDownLocked(command.Errorf(command.CodeNoMain, "group %d: main moved to node %d", g.id, gi.Main))
	}
	g.ftail = newTailLog(g.gs, m)
	g.follower = sibling.NewFollower(sibling.FollowerState{Group: uint16(g.id), Self: uint16(g.n.cfg.ID), Epoch: m.Epoch,
		LastEpoch: m.LastEpoch, LastSeq: m.LastSeq, Commit: m.CommitSeq, History: m.EpochHistory, Log: g.ftail})
	g.role, g.epoch = roleSibling, gi.Epoch
	g.lastHeard = time.Time{}
	g.broadcast()
	g.log.Info().Uint16("main", gi.Main).Uint64("epoch", gi.Epoch).Uint64("lastSeq", m.LastSeq).Msg("serving as sibling")
	return nil
}

// handleAppends steps the follower through messages that arrived together and makes the
// result durable in one write (one fsync for the lot), then returns the acks to send.
func (g *group) handleAppends(msgs []*sibling.Append) []*sibling.Ack {
	g.mu.Lock()
	defer g.mu.Unlock()
	acks := make([]*sibling.Ack, 0, len(msgs))
	if g.resyncing && !g.receiving && g.resyncAbandoned(msgs) {
		return nil
	}
	if g.role != roleSibling {
		// Not following a main (yet, or any more): say nothing rather than describe a log
		// this copy does not stand behind. The main probes again on its next heartbeat.
		return nil
	}
	authorize := func(epoch uint64, main uint16) bool {
		gi := g.n.directoryGroup(g.id)
		return gi != nil && gi.Epoch == epoch && gi.Main == main
	}
	b := &Batch{}
	appended := map[uint64]sibling.Entry{}
	flush := func() bool {
		if !g.writeSiblingBatch(b, appended) {
			return false
		}
		b, appended = &Batch{}, map[uint64]sibling.Entry{}
		return true
	}
	for _, m := range msgs {
		st := g.follower.Step(m, authorize)
		if st.Violation != nil {
			g.log.Error().Err(st.Violation).Msg("invariant violation; this copy stops serving the group")
			g.role = roleNone
			g.broadcast()
			return acks
		}
		if st.Truncate > 0 && (len(b.Append) > 0 || b.Truncate > 0) {
			if !flush() {
				return nil
			}
		}
		if st.Epoch > b.Epoch {
			b.Epoch = st.Epoch
		}
		if st.Truncate > 0 {
			b.Truncate = st.Truncate
			g.ftail.truncate(st.Truncate)
		}
		for _, e := range st.Append {
			b.Append = append(b.Append, e)
			appended[e.Seq] = e
			g.ftail.add(e)
		}
		if st.Commit > b.CommitSeq {
			b.CommitSeq = st.Commit
		}
		if st.Ack.OK && st.Ack.Epoch == g.epoch {
			g.lastHeard = time.Now()
		}
		ack := st.Ack
		acks = append(acks, &ack)
	}
	if !flush() {
		return nil
	}
	g.ftail.forget(g.applied + 1)
	return acks
}

// writeSiblingBatch adds the newly committed entries to b and writes it. Call with g.mu held.
func (g *group) writeSiblingBatch(b *Batch, appended map[uint64]sibling.Entry) bool {
	if b.CommitSeq > g.commit {
		for s := g.applied + 1; s <= b.CommitSeq; s++ {
			e, ok := appended[s]
			if !ok {
				got, found, err := g.ftail.get(s)
				if err != nil || !found {
					break
				}
				e = got
			}
			eff, err := command.DecodeEffect(e.Data)
			if err != nil {
				g.log.Error().Err(err).Uint64("seq", s).Msg("undecodable committed entry")
				return false
			}
			b.Apply = append(b.Apply, AppliedEffect{Epoch: e.Epoch, Seq: s, Effect: eff})
		}
	}
	if b.Epoch == 0 && b.Truncate == 0 && len(b.Append) == 0 && b.CommitSeq <= g.commit {
		return true
	}
	if b.Truncate == 0 {
		b.Compact = g.compactStep(g.ftail)
	}
	start := time.Now()
	if err := g.gs.Write(b); err != nil {
		g.log.Error().Err(err).Msg("log write failed; this copy stops serving the group")
		g.role = roleNone
		g.broadcast()
		return false
	}
	g.n.metrics.fsync.Observe(time.Since(start).Seconds())
	if b.CommitSeq > g.commit {
		g.commit = b.CommitSeq
	}
	if n := len(b.Apply); n > 0 {
		g.applied = b.Apply[n-1].Seq
		g.n.publish(g.id, b.Apply)
	}
	g.broadcast()
	return true
}

// siblingRead waits until this copy may answer a sibling read at or above floor and returns
// the position it reads at, and the copy's generation: the caller reads the store, then
// checks with stillValid that no resync threw the contents away meanwhile. A copy that is
// not following a live main does not serve.
func (g *group) siblingRead(ctx context.Context, floor uint64) (at, gen uint64, err error) {
	err = g.waitFor(ctx, func() (bool, error) {
		gen = g.resyncGen
		switch {
		case g.resyncing:
			return false, command.Errorf(command.CodeUnavailable, "group %d: this copy is being rebuilt from a snapshot", g.id)
		case g.role == roleMain:
			at = g.applied
		case g.role == roleSibling:
			if time.Since(g.lastHeard) > g.n.cfg.DownAfter {
				return false, command.Errorf(command.CodeUnavailable, "group %d: this copy has not heard its main recently", g.id)
			}
			at = g.applied
		default:
			return false, command.Errorf(command.CodeUnavailable, "group %d: this copy is not serving", g.id)
		}
		return at >= floor, nil
	})
	return at, gen, err
}

// stillValid reports an error if the copy's contents were thrown away since generation gen
// (a read of the store made in between may have seen a wiped or half-rebuilt copy).
func (g *group) stillValid(gen uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resyncGen != gen || g.resyncing {
		return command.Errorf(command.CodeUnavailable, "group %d: this copy is being rebuilt from a snapshot", g.id)
	}
	return nil
}
