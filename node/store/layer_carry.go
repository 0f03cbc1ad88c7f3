package store

// Log entries a flush keeps in memory.
//
// Most log entries live a few seconds: a copy compacts applied entries once they are
// LogKeep behind (node/compact.go). Written to bbolt by the flush after their append, they
// would be written once and deleted again soon after, which cost about a third of a node's
// flush and most of the bytes it wrote. So a flush stores every other change of the
// group's layer but keeps the layer's log entries in memory, as a carried generation,
// through KeepFlushes more flushes. Entries compacted meanwhile never reach bbolt; the flush
// after those writes the ones still there. An entry appended between flushes k-1 and k is
// thus written, if at all, by flush k+KeepFlushes+1. With the defaults (16 MiB of log per
// flush, KeepFlushes 2), a dev cluster under sibyl bench at 64 clients wrote none in 20 s
// and dropped 136,093 (node 1's sibyl_store_flush_log_entries_total).
//
// The log records those entries came from stay in the log, so a boot can rebuild them: each
// group's meta holds logPos, the log position of its oldest carried generation, beside
// walPos. A boot skips the group's records up to logPos, replays only the log-bucket
// changes (truncations, appends, compactions) of those up to walPos (batchPlan.executeLog),
// and all of those after. A flush removes log segments before the smallest logPos, so a
// boot replays at most about (KeepFlushes+2) × FlushBytes of log, all but the last
// FlushBytes of it only for its log entries.
//
// Replaying a record's log changes over a log bucket that already holds some later changes
// gives the same bucket: every change sets a seq or deletes seqs whatever they held before,
// and each seq ends as the last change that names it says, or as it was at logPos.

// carryGen is one flush's log entries kept out of bbolt. Its logLayer holds entries only:
// the deleted ranges of the same flush were stored.
type carryGen struct {
	from  uint64 // log position from which its entries' records start
	log   logLayer
	flush int // flushes that kept it so far
}

// DefaultKeepFlushes is how many flushes keep a layer's log entries in memory before one
// writes them (DurableOptions.KeepFlushes).
const DefaultKeepFlushes = 2

// carryPlan is what one flush does with a group's log entries: the entries it writes to
// bbolt, the generations it keeps, and the group's logPos after it.
type carryPlan struct {
	write  []*logLayer // oldest first; entries only
	keep   []*carryGen // oldest first, the flushed layer's own last
	logPos uint64
	// written: entries it writes; dropped: carried entries it drops unwritten (compacted,
	// truncated or replaced since)
	written, dropped int
}

// planCarry decides, for a flush of layer mid (whose records start at mid.from and end at
// pos) over the generations carried so far, what goes to bbolt and what stays in memory.
// keepFlushes 0 writes everything (a clean shutdown). Nothing is modified: readers still
// see carried and mid until the flush commits.
func planCarry(carried []*carryGen, mid *layer, pos uint64, keepFlushes int) carryPlan {
	var p carryPlan
	for _, g := range carried {
		// Entries that mid deleted or replaced are gone: mid's ranges reach bbolt in this
		// flush, and its entries override these.
		live := logLayer{}
		for _, it := range g.log.items {
			if mid.log.hides(it.seq) {
				p.dropped++
				continue
			}
			if _, ok := mid.log.find(it.seq); ok {
				p.dropped++
				continue
			}
			live.items = append(live.items, it)
		}
		if len(live.items) == 0 {
			continue
		}
		if g.flush+1 > keepFlushes {
			p.write = append(p.write, &live)
			p.written += len(live.items)
			continue
		}
		p.keep = append(p.keep, &carryGen{from: g.from, log: live, flush: g.flush + 1})
	}
	if len(mid.log.items) > 0 {
		own := logLayer{items: mid.log.items}
		if keepFlushes == 0 {
			p.write = append(p.write, &own)
			p.written += len(own.items)
		} else {
			p.keep = append(p.keep, &carryGen{from: mid.from, log: own})
		}
	}
	p.logPos = pos
	if len(p.keep) > 0 {
		p.logPos = min(pos, p.keep[0].from)
	}
	return p
}

// writeCarried stores carried entries in the log bucket kv, oldest generation first.
func writeCarried(kv storeKV, gens []*logLayer) error {
	for _, g := range gens {
		if err := g.writeItems(kv); err != nil {
			return err
		}
	}
	return nil
}

// carriedLayers lists the generations' entries newest first, as reads search them.
func carriedLayers(carried []*carryGen) []*logLayer {
	out := make([]*logLayer, 0, len(carried))
	for i := len(carried) - 1; i >= 0; i-- {
		out = append(out, &carried[i].log)
	}
	return out
}

var metaKeyLogPos = []byte("logPos")

// FlushStats count what the durable store's flushes did.
type FlushStats struct {
	Flushes uint64 // transactions that stored layers in bbolt
	// LogEntriesWritten: log entries flushes wrote to bbolt; LogEntriesDropped: entries
	// flushes kept in memory and then dropped unwritten, compacted or truncated meanwhile.
	LogEntriesWritten, LogEntriesDropped uint64
}
