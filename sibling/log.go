package sibling

import "fmt"

// Log is the read side of a copy's log that the cores consult. The node implements it over
// its store with a cache of recent entries.
type Log interface {
	// EpochAt returns the epoch of the entry at seq, and false when the log does not hold
	// it. Seq 0 is the empty prefix: (0, true).
	EpochAt(seq uint64) (uint64, bool)
	// Entries returns the entries from..to (inclusive), stopping after maxBytes of data
	// (at least one entry when any is in range).
	Entries(from, to uint64, maxBytes int) ([]Entry, error)
}

// MemLog is an in-memory Log for tests and simulations. Its zero value is an empty log.
type MemLog struct {
	first   uint64 // seq of entries[0]
	entries []Entry
}

// NewMemLog returns an empty log whose first entry will be at seq 1.
func NewMemLog() *MemLog { return &MemLog{first: 1} }

func (l *MemLog) EpochAt(seq uint64) (uint64, bool) {
	if seq == 0 {
		return 0, true
	}
	if seq < l.first || seq >= l.first+uint64(len(l.entries)) {
		return 0, false
	}
	return l.entries[seq-l.first].Epoch, true
}

func (l *MemLog) Entries(from, to uint64, maxBytes int) ([]Entry, error) {
	if from < l.first {
		return nil, fmt.Errorf("entries from %d: log starts at %d: %w", from, l.first, ErrCompacted)
	}
	var out []Entry
	size := 0
	for s := from; s <= to && s < l.first+uint64(len(l.entries)); s++ {
		e := l.entries[s-l.first]
		if len(out) > 0 && size+len(e.Data) > maxBytes {
			break
		}
		size += len(e.Data)
		out = append(out, e)
	}
	return out, nil
}

// Last returns the last seq (first-1 when empty).
func (l *MemLog) Last() uint64 { return l.first + uint64(len(l.entries)) - 1 }

// Append adds entries, which must follow the last one.
func (l *MemLog) Append(es ...Entry) error {
	for _, e := range es {
		if e.Seq != l.Last()+1 {
			return fmt.Errorf("append seq %d does not follow last seq %d", e.Seq, l.Last())
		}
		l.entries = append(l.entries, e)
	}
	return nil
}

// Truncate drops every entry with seq >= from.
func (l *MemLog) Truncate(from uint64) {
	if from < l.first {
		from = l.first
	}
	if n := from - l.first; n < uint64(len(l.entries)) {
		l.entries = l.entries[:n]
	}
}

// Compact drops every entry with seq <= through.
func (l *MemLog) Compact(through uint64) {
	for l.first <= through && len(l.entries) > 0 {
		l.entries = l.entries[1:]
		l.first++
	}
}
