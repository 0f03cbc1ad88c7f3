package node

import (
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// A main keeps its log for a copy being registered (a learner: docs/register-sibling.md).
// From the learner's first answer on, every entry after its position (the seq of the
// snapshot being sent to it, then what it acknowledged) stays in the main's log until the
// learner votes, whatever --log-keep and --log-keep-max say, so a single snapshot always
// suffices: the learner replays the rest from the log. A learner that never answered this
// main (an old main that is still down) is held for only as a lagging voter is. The hold is
// bounded by RegisterHoldBytes (bytes the main logged after the learner's position) and
// RegisterHoldTime (since the learner's first answer).
// Past either bound the main gives the registration up: it stops holding, sends the
// learner no further snapshot, and reports a typed abort (command.RegisterAbort) in its heartbeat;
// the controller drops the learner from the group and fails registerSibling with it.

// Defaults of Config.RegisterHoldBytes and Config.RegisterHoldTime.
const (
	DefaultRegisterHoldBytes = 1 << 30
	DefaultRegisterHoldTime  = 10 * time.Minute
)

// byteMarkEvery is how many logged bytes apart the main notes (seq, bytes logged so far):
// the bytes after a seq are known to within that.
const byteMarkEvery = 64 << 10

// learnerHold is the main's hold of its log for one learner.
type learnerHold struct {
	since time.Time // the learner's first answer to this main
	// fromSeq: the main's last seq then; bytes are counted after the later of it and the
	// learner's position (this main cannot count the bytes of entries it inherited).
	fromSeq uint64
	aborted *command.RegisterAbort
}

// byteMark says the main had logged bytes bytes of entries through seq.
type byteMark struct{ seq, bytes uint64 }

// noteLoggedBytes counts an entry's bytes in the main's running total. Call with g.mu held.
func (g *group) noteLoggedBytes(seq uint64, n int) {
	g.logBytes += uint64(n)
	if k := len(g.byteMarks); k == 0 || g.logBytes-g.byteMarks[k-1].bytes >= byteMarkEvery {
		g.byteMarks = append(g.byteMarks, byteMark{seq: seq, bytes: g.logBytes})
	}
}

// bytesAfter is about how many bytes of entries the main logged after seq (counted from
// the last mark at or below it, so at most byteMarkEvery more). Call with g.mu held.
func (g *group) bytesAfter(seq uint64) uint64 {
	var at uint64
	for i := len(g.byteMarks) - 1; i >= 0; i-- {
		if g.byteMarks[i].seq <= seq {
			at = g.byteMarks[i].bytes
			break
		}
	}
	return g.logBytes - at
}

// learnerPosition is what the main holds its log from for learner n: the seq of the
// snapshot being sent to it, else what it is known to hold. Call with g.mu held.
func (g *group) learnerPosition(n uint16, p sibling.Progress) uint64 {
	if t := g.snapshots[n]; t != nil {
		return t.snap.Header().Seq
	}
	return p.Match
}

// holdFloor is the seq compaction may not pass for the learners the main holds its log
// for (0: none), after checking every hold against its bounds. Call with g.mu held, as
// main.
func (g *group) holdFloor(now time.Time) (floor uint64, any bool) {
	g.checkHolds(now)
	for n, p := range g.c.Replication().Peers() {
		h := g.holds[n]
		if h == nil || h.aborted != nil {
			continue
		}
		if pos := g.learnerPosition(n, p); !any || pos < floor {
			floor, any = pos, true
		}
	}
	return floor, any
}

// learnersAnswered starts a hold for every learner among the senders of acks that has
// none yet. Call with g.mu held, as main.
func (g *group) learnersAnswered(acks []*sibling.Ack, now time.Time) {
	m := g.c.Replication()
	if m == nil {
		return
	}
	peers := m.Peers()
	for _, a := range acks {
		if p, ok := peers[a.From]; ok && p.Learner && g.holds[a.From] == nil {
			g.holds[a.From] = &learnerHold{since: now, fromSeq: m.LastSeq()}
		}
	}
}

// checkHolds ends the holds of copies that vote now or left the group, and aborts the ones
// past a bound. Call with g.mu held, as main.
func (g *group) checkHolds(now time.Time) {
	m := g.c.Replication()
	peers := m.Peers()
	for n := range g.holds {
		if p, ok := peers[n]; !ok || !p.Learner {
			delete(g.holds, n)
		}
	}
	var lowest uint64
	first := true
	for n, h := range g.holds {
		p := peers[n]
		if h.aborted != nil {
			continue
		}
		from := max(g.learnerPosition(n, p), h.fromSeq)
		if first || from < lowest {
			lowest, first = from, false
		}
		held, took := g.bytesAfter(from), now.Sub(h.since)
		switch {
		case held > g.n.cfg.RegisterHoldBytes:
			g.abortHold(n, h, &command.RegisterAbort{Bound: command.BoundRegisterHoldBytes, Limit: g.n.cfg.RegisterHoldBytes, Held: held})
		case took > g.n.cfg.RegisterHoldTime:
			g.abortHold(n, h, &command.RegisterAbort{Bound: command.BoundRegisterHoldTime,
				Limit: uint64(g.n.cfg.RegisterHoldTime.Milliseconds()), Held: uint64(took.Milliseconds())})
		}
	}
	// Marks below every hold's start are of no more use; one at or below it is kept.
	if first {
		lowest = m.LastSeq()
	}
	i := 0
	for i+1 < len(g.byteMarks) && g.byteMarks[i+1].seq <= lowest {
		i++
	}
	g.byteMarks = append(g.byteMarks[:0], g.byteMarks[i:]...)
}

// abortHold gives up learner n's registration. Its snapshot, if one is kept for it, no
// longer pins the log; one being sent ends when the controller drops the learner (its
// link stops). Call with g.mu held, as main.
func (g *group) abortHold(n uint16, h *learnerHold, a *command.RegisterAbort) {
	h.aborted = a
	g.n.metrics.registerAborts.WithLabelValues(a.Bound).Inc()
	if t := g.snapshots[n]; t != nil && !t.running {
		g.dropSnapshot(n)
	}
	g.log.Warn().Uint16("sibling", n).Str("bound", a.Bound).Uint64("limit", a.Limit).Uint64("held", a.Held).
		Dur("since", time.Since(h.since)).Msg("registration aborted: keeping the log for the copy passed a bound")
}

// holdAborted reports whether the main gave up registering learner n. Call with g.mu held.
func (g *group) holdAborted(n uint16) *command.RegisterAbort {
	if h := g.holds[n]; h != nil {
		return h.aborted
	}
	return nil
}
