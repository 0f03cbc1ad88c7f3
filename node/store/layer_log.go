package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// logLayer is one layer's part of a group's log bucket. Log keys are seqs, appended in
// order and removed in runs: compaction drops a prefix, a truncation a suffix. So instead
// of a tree of items with a deletion mark per key, a layer keeps its entries in one slice
// sorted by seq (an append is a slice append) and its deletions as ranges of seqs (a
// compaction of thousands of entries is one range).
//
// Within a layer an entry overrides a range that covers it: a put after a deletion puts
// the entry back, and a deletion after a put removes the entry and widens a range. Below
// the layer, every seq of a range is deleted.
type logLayer struct {
	items []logItem // ascending seq, no duplicates
	gone  []seqSpan // ascending, disjoint and not adjacent
}

type logItem struct {
	seq uint64
	val []byte
}

// seqSpan is the seqs lo..hi, both included.
type seqSpan struct{ lo, hi uint64 }

func logSeq(key []byte) (uint64, error) {
	if len(key) != 8 {
		return 0, fmt.Errorf("log key %x: want 8 bytes", key)
	}
	return binary.BigEndian.Uint64(key), nil
}

func (l *logLayer) empty() bool { return len(l.items) == 0 && len(l.gone) == 0 }

// find returns the index of seq in items, or where it would go.
func (l *logLayer) find(seq uint64) (int, bool) {
	n := len(l.items)
	if n == 0 || l.items[n-1].seq < seq {
		return n, false
	}
	i := sort.Search(n, func(i int) bool { return l.items[i].seq >= seq })
	return i, i < n && l.items[i].seq == seq
}

func (l *logLayer) put(seq uint64, val []byte) {
	i, ok := l.find(seq)
	switch {
	case ok:
		l.items[i].val = val
	case i == len(l.items):
		l.items = append(l.items, logItem{seq, val})
	default:
		l.items = slices.Insert(l.items, i, logItem{seq, val})
	}
}

func (l *logLayer) del(seq uint64) { l.delRange(seq, seq) }

// delRange deletes lo..hi: the layer's entries there go, and the range hides the seqs in
// the layers below.
func (l *logLayer) delRange(lo, hi uint64) {
	if lo > hi {
		return
	}
	i, _ := l.find(lo)
	j := i
	for j < len(l.items) && l.items[j].seq <= hi {
		j++
	}
	switch {
	case i == j:
	case i == 0:
		clear(l.items[:j]) // let the values go
		l.items = l.items[j:]
	default:
		l.items = slices.Delete(l.items, i, j)
	}
	l.addGone(lo, hi)
}

func (l *logLayer) addGone(lo, hi uint64) {
	// The spans that overlap or touch lo..hi merge with it.
	i := sort.Search(len(l.gone), func(i int) bool { return l.gone[i].hi+1 >= lo })
	j := i
	for j < len(l.gone) && l.gone[j].lo <= hi+1 {
		lo, hi = min(lo, l.gone[j].lo), max(hi, l.gone[j].hi)
		j++
	}
	l.gone = slices.Replace(l.gone, i, j, seqSpan{lo, hi})
}

// hides reports whether seq is deleted for the layers below.
func (l *logLayer) hides(seq uint64) bool {
	i := sort.Search(len(l.gone), func(i int) bool { return l.gone[i].hi >= seq })
	return i < len(l.gone) && l.gone[i].lo <= seq
}

// lookup returns what the layer says of seq: an entry, a deletion, or nothing (found false).
func (l *logLayer) lookup(seq uint64) (val []byte, found bool) {
	if i, ok := l.find(seq); ok {
		return l.items[i].val, true
	}
	return nil, l.hides(seq)
}

// writeGone deletes the layer's ranges from kv. A flush writes them before any entry
// (writeItems), which overrides them.
func (l *logLayer) writeGone(kv storeKV) error {
	var doomed [][]byte
	for _, s := range l.gone {
		doomed = doomed[:0]
		err := kv.each(beU64(s.lo), func(k, _ []byte) (bool, error) {
			seq, err := logSeq(k)
			if err != nil || seq > s.hi {
				return false, err
			}
			doomed = append(doomed, append([]byte(nil), k...)) // k is invalid after a delete
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, k := range doomed {
			if err := kv.del(k); err != nil {
				return fmt.Errorf("delete log key %x: %w", k, err)
			}
		}
	}
	return nil
}

// writeItems puts the layer's entries in kv.
func (l *logLayer) writeItems(kv storeKV) error {
	for _, it := range l.items {
		if err := kv.put(beU64(it.seq), it.val); err != nil {
			return fmt.Errorf("store log seq %d: %w", it.seq, err)
		}
	}
	return nil
}

// mergeInto applies l's changes on top of lower.
func (l *logLayer) mergeInto(lower *logLayer) {
	for _, s := range l.gone {
		lower.delRange(s.lo, s.hi)
	}
	for _, it := range l.items {
		lower.put(it.seq, it.val)
	}
}

// The log bucket seen through the layers (layerKV with bucket == bucketLog).

// logLayers lists the layers that may speak of a seq, uppermost first: top, mid, then the
// carried generations, newest first (layer_carry.go).
func (k *layerKV) logLayers() []*logLayer {
	out := make([]*logLayer, 0, 2+len(k.view.carried))
	out = append(out, &k.top.log)
	if k.mid != nil {
		out = append(out, &k.mid.log)
	}
	return append(out, k.view.carried...)
}

func (k *layerKV) logGet(key []byte) []byte {
	seq, err := logSeq(key)
	if err != nil {
		return nil
	}
	for _, l := range k.logLayers() {
		if v, found := l.lookup(seq); found {
			return v // nil when deleted
		}
	}
	if b := k.base(); b != nil {
		return b.Get(key)
	}
	return nil
}

func (k *layerKV) logPut(key, v []byte) error {
	seq, err := logSeq(key)
	if err != nil {
		return err
	}
	k.top.log.put(seq, v)
	return nil
}

func (k *layerKV) logDel(key []byte) error {
	seq, err := logSeq(key)
	if err != nil {
		return err
	}
	k.top.log.del(seq)
	return nil
}

// logEach merges the layers' entries and the base's in seq order: for a seq in several,
// the upper layer's entry wins, and a layer's deleted range hides the seqs below it.
func (k *layerKV) logEach(from []byte, fn func(k, v []byte) (bool, error)) error {
	var start uint64
	if len(from) > 0 {
		var err error
		if start, err = logSeq(from); err != nil {
			return err
		}
	}
	layers := k.logLayers()
	heads := make([]int, len(layers))
	for i, l := range layers {
		heads[i], _ = l.find(start)
	}
	var c *bolt.Cursor
	var ck, cv []byte
	if b := k.base(); b != nil {
		c = b.Cursor()
		ck, cv = c.Seek(beU64(start))
	}
	for {
		// The smallest seq any source holds next.
		seq, any := uint64(0), false
		for i, l := range layers {
			if h := heads[i]; h < len(l.items) && (!any || l.items[h].seq < seq) {
				seq, any = l.items[h].seq, true
			}
		}
		var baseSeq uint64
		if ck != nil {
			var err error
			if baseSeq, err = logSeq(ck); err != nil {
				return err
			}
			if !any || baseSeq < seq {
				seq, any = baseSeq, true
			}
		}
		if !any {
			return nil
		}
		// What the uppermost layer that speaks of seq says.
		var val []byte
		decided, visible := false, false
		for i, l := range layers {
			if h := heads[i]; h < len(l.items) && l.items[h].seq == seq {
				val, decided, visible = l.items[h].val, true, true
				break
			}
			if l.hides(seq) {
				decided = true
				break
			}
		}
		if !decided && ck != nil && baseSeq == seq {
			val, visible = cv, true
		}
		for i, l := range layers {
			if h := heads[i]; h < len(l.items) && l.items[h].seq == seq {
				heads[i]++
			}
		}
		if ck != nil && baseSeq == seq {
			ck, cv = c.Next()
		}
		if !visible {
			continue
		}
		more, err := fn(beU64(seq), val)
		if err != nil || !more {
			return err
		}
	}
}
