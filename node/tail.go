package node

import (
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// tailLog is a copy's log as the replication cores see it (sibling.Log): the epoch history
// answers EpochAt, recent entries are kept in memory so a main can send them without
// reading its store, and older ones are read from the store.
type tailLog struct {
	gs      store.GroupStore
	history []sibling.EpochStart
	first   uint64 // first seq in the store's log
	last    uint64
	base    uint64          // seq of mem[0]
	mem     []sibling.Entry // entries base..last
}

func newTailLog(gs store.GroupStore, m store.Meta) *tailLog {
	return &tailLog{gs: gs, history: append([]sibling.EpochStart(nil), m.EpochHistory...),
		first: m.FirstSeq, last: m.LastSeq, base: m.LastSeq + 1}
}

func (l *tailLog) EpochAt(seq uint64) (uint64, bool) {
	if seq == 0 {
		return 0, true
	}
	if seq > l.last || seq+1 < l.first {
		return 0, false // the entry before the first one kept is still known by its epoch
	}
	var e uint64
	for _, h := range l.history {
		if h.FirstSeq > seq {
			break
		}
		e = h.Epoch
	}
	return e, e != 0
}

func (l *tailLog) Entries(from, to uint64, maxBytes int) ([]sibling.Entry, error) {
	if to > l.last {
		to = l.last
	}
	if from > to {
		return nil, nil
	}
	if from < l.base {
		return l.gs.Entries(from, min(to, l.base-1), maxBytes)
	}
	out := make([]sibling.Entry, 0, min(to-from+1, 256))
	size := 0
	for s := from; s <= to; s++ {
		e := l.mem[s-l.base]
		if len(out) > 0 && size+len(e.Data) > maxBytes {
			break
		}
		size += len(e.Data)
		out = append(out, e)
	}
	return out, nil
}

// add records an entry appended after the last one (in memory now, in the store soon).
func (l *tailLog) add(e sibling.Entry) {
	if len(l.mem) == 0 {
		l.base = e.Seq
	}
	if n := len(l.history); n == 0 || l.history[n-1].Epoch != e.Epoch {
		l.history = append(l.history, sibling.EpochStart{Epoch: e.Epoch, FirstSeq: e.Seq})
	}
	l.mem = append(l.mem, e)
	l.last = e.Seq
}

// truncate drops entries with seq >= from.
func (l *tailLog) truncate(from uint64) {
	kept := l.history[:0]
	for _, h := range l.history {
		if h.FirstSeq < from {
			kept = append(kept, h)
		}
	}
	l.history = kept
	if from <= l.base {
		l.mem = l.mem[:0]
		l.base = from
	} else if n := from - l.base; n < uint64(len(l.mem)) {
		l.mem = l.mem[:n]
	}
	if from-1 < l.last {
		l.last = from - 1
	}
}

// forget drops in-memory entries below seq (they stay in the store).
func (l *tailLog) forget(below uint64) {
	if below <= l.base || len(l.mem) == 0 {
		return
	}
	n := below - l.base
	if n > uint64(len(l.mem)) {
		n = uint64(len(l.mem))
	}
	// Shift the rest down in place, which keeps the array for the entries to come, and
	// clear the slots left behind so that their data can be collected.
	rest := copy(l.mem, l.mem[n:])
	clear(l.mem[rest:])
	l.mem = l.mem[:rest]
	l.base += n
}

// get returns the entry at seq from memory or the store.
func (l *tailLog) get(seq uint64) (sibling.Entry, bool, error) {
	if seq >= l.base && seq <= l.last {
		return l.mem[seq-l.base], true, nil
	}
	es, err := l.gs.Entries(seq, seq, 1)
	if err != nil || len(es) == 0 {
		return sibling.Entry{}, false, err
	}
	return es[0], true, nil
}
