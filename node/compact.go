package node

import (
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
)

// Compaction and vacuum keep a copy's log, tombstones and dedupe records bounded
// (docs/replication.md case 12).
//
// Every copy drops applied log entries more than LogKeep behind its applied seq, a few
// thousand per durable write, in the same transaction as the write (no extra fsync). A main
// keeps more for a sibling that lags (its Match), but never more than LogKeepMax: a sibling
// further behind is rebuilt from a snapshot instead, so one copy that is down cannot make
// the log grow without bound. A snapshot being sent pins the log after its seq, so the
// sibling can continue from it. A copy being registered holds the log from its position
// until it votes, within the bounds of register_hold.go rather than LogKeepMax. The epoch
// history is never compacted.
//
// Vacuum is a log entry the main writes every VacuumEvery: every copy applies it at the same
// position, so all drop the same records (case 12D).

const (
	compactMin   = 1024 // fewer entries than this are not worth a compaction step
	compactBatch = 4096 // at most this many entries are removed per durable write
)

// compactStep returns the seq to compact through with the next write (0: none) and moves
// the log's horizon there, so no append is built from entries about to go. Call with
// g.mu held; tl is the role's tail log.
func (g *group) compactStep(tl *tailLog) uint64 {
	keep := g.n.cfg.LogKeep
	if tl == nil || g.applied <= keep {
		return 0
	}
	target := g.applied - keep
	if g.c.Role() == core.Main && g.c.Replication() != nil {
		var floor uint64
		if g.applied > g.n.cfg.LogKeepMax {
			floor = g.applied - g.n.cfg.LogKeepMax
		}
		held, holding := g.holdFloor(time.Now())
		for n, p := range g.c.Replication().Peers() {
			if g.holds[n] != nil {
				continue // a learner that answered: held below, or given up
			}
			if !p.Snapshot && p.Match < target {
				target = max(p.Match, floor)
			}
		}
		if holding && held < target {
			target = held
		}
		if pin := g.snapshotPin(); pin > 0 && pin < target {
			target = pin
		}
	}
	if target < tl.first || target-tl.first+1 < compactMin {
		return 0
	}
	target = min(target, tl.first+compactBatch-1)
	g.n.metrics.compacted.Add(float64(target - tl.first + 1))
	tl.first = target + 1
	tl.forget(tl.first)
	return target
}

// vacuumLoop writes a vacuum entry every VacuumEvery while the group is written to.
func (g *group) vacuumLoop(stop chan struct{}) {
	t := time.NewTicker(g.n.cfg.VacuumEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		if g.c.Role() == core.Main && g.stopMain == stop {
			g.vacuumLocked(time.Now())
		}
		g.mu.Unlock()
	}
}

// seqMark says the main had assigned up to seq at monotonic time at.
type seqMark struct {
	seq uint64
	at  time.Time
}

// markSeqs records the main's last seq now; the first mark of a main is taken when it
// becomes main, so everything it inherited counts as new from then (docs/replication.md case
// 9D). Call with g.mu held.
func (g *group) markSeqs(now time.Time) {
	g.marks = append(g.marks, seqMark{seq: g.c.Replication().LastSeq(), at: now})
	// Keep the newest mark at least as old as the longest retention, and all after it.
	longest := max(g.n.cfg.TombstoneRetention, g.n.cfg.DedupeRetention)
	i := 0
	for i+1 < len(g.marks) && now.Sub(g.marks[i+1].at) >= longest {
		i++
	}
	g.marks = g.marks[i:]
}

// seenFor returns the highest seq the main has known for at least d (0: none yet).
func (g *group) seenFor(d time.Duration, now time.Time) uint64 {
	var s uint64
	for _, m := range g.marks {
		if now.Sub(m.at) >= d {
			s = m.seq
		}
	}
	return s
}

// vacuumLocked appends a vacuum entry when it would drop anything new, unless the main is
// frozen for a hand-over. Tombstones go only for deletes every sibling the main replicates
// to holds (stale copies are not replicated to; a copy being rebuilt gets the vacuumed
// state in its snapshot). Call with g.mu held.
func (g *group) vacuumLocked(now time.Time) {
	g.markSeqs(now)
	if g.frozen != 0 || !g.c.BarrierCommitted() {
		return
	}
	ts := min(g.c.Commit(), g.seenFor(g.n.cfg.TombstoneRetention, now))
	for _, p := range g.c.Replication().Peers() {
		if !p.Snapshot {
			ts = min(ts, p.Match)
		}
	}
	dd := min(g.c.Commit(), g.seenFor(g.n.cfg.DedupeRetention, now))
	// Only when the new bounds reach a delete or a keyed write not yet covered: an idle
	// group writes no vacuum entries.
	newTs := ts > g.vacuumed.Tombstones && g.droppable > g.vacuumed.Tombstones
	newDd := dd > g.vacuumed.Dedupe && g.droppable > g.vacuumed.Dedupe
	if !newTs && !newDd {
		return
	}
	v := command.Vacuum{Tombstones: max(ts, g.vacuumed.Tombstones), Dedupe: max(dd, g.vacuumed.Dedupe)}
	g.appendLocked(&command.Effect{Kind: command.EffectVacuum, At: now.UTC(), Vacuum: &v})
	g.vacuumed = v
	g.n.metrics.vacuumed.WithLabelValues(strconv.Itoa(int(g.id))).Set(float64(v.Tombstones))
	g.kick()
}
