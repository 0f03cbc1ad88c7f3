package node

import (
	"context"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// handleAppends steps the sibling's core through messages that arrived together, makes
// the result durable (one write, one fsync, for the lot unless a truncation splits it), then
// returns the acks to send.
func (g *group) handleAppends(msgs []*sibling.Append) []*sibling.Ack {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resyncing && !g.receiving && g.resyncAbandoned(msgs) {
		return nil
	}
	authorize := func(epoch uint64, main uint16) bool {
		gi := g.n.directoryGroup(g.id)
		return gi != nil && gi.Epoch == epoch && gi.Main == main
	}
	writes, acks := g.c.Step(msgs, authorize, time.Now())
	for i := range writes {
		if !g.writeSiblingBatch(&writes[i]) {
			g.drain()
			return nil
		}
	}
	g.drain()
	if g.ftail != nil {
		g.ftail.forget(g.applied + 1)
	}
	return acks
}

// writeSiblingBatch writes w with the entries it commits applied, and reports it to the
// core. The config version of its appends is recorded first (configs.go). Call with g.mu
// held.
func (g *group) writeSiblingBatch(w *core.Write) bool {
	if err := g.n.configs.raise(g.id, w.Config); err != nil {
		g.log.Error().Err(err).Msg("recording the config version failed; this copy stops serving the group")
		g.n.noteDiskFault(err)
		g.c.Stop(nil)
		return false
	}
	if w.Truncate > 0 {
		g.ftail.truncate(w.Truncate)
	}
	for _, e := range w.Append {
		g.ftail.add(e)
	}
	b := &store.Batch{Epoch: w.Epoch, Truncate: w.Truncate, Append: w.Append, CommitSeq: w.Commit, ApplyFromLog: true}
	if b.CommitSeq > g.c.Commit() {
		b.Apply = make([]store.AppliedEffect, 0, min(b.CommitSeq-g.applied, 1024))
		for s := g.applied + 1; s <= b.CommitSeq; s++ {
			e, found, err := g.ftail.get(s)
			if err != nil || !found {
				break
			}
			eff, err := command.DecodeEffect(e.Data)
			if err != nil {
				g.log.Error().Err(err).Uint64("seq", s).Msg("undecodable committed entry")
				return false
			}
			b.Apply = append(b.Apply, store.AppliedEffect{Epoch: e.Epoch, Seq: s, Effect: eff})
		}
	}
	if b.Epoch == 0 && b.Truncate == 0 && len(b.Append) == 0 && b.CommitSeq <= g.c.Commit() {
		return true
	}
	if b.Truncate == 0 {
		b.Compact = g.compactStep(g.ftail)
	}
	start := time.Now()
	if err := g.gs.Write(b); err != nil {
		g.log.Error().Err(err).Msg("log write failed; this copy stops serving the group")
		g.n.noteDiskFault(err)
		g.c.Stop(nil)
		return false
	}
	g.n.metrics.fsync.Observe(time.Since(start).Seconds())
	g.c.Written(w)
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
		case g.c.Role() == core.Main:
			at = g.applied
		case g.c.Role() == core.Sibling:
			if !g.c.Heard(time.Now()) {
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
