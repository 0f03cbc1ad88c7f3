package store

import (
	"bytes"

	"github.com/google/btree"
	bolt "go.etcd.io/bbolt"
)

// A layer holds one group's changes that the state store (bbolt) does not have yet: per
// bucket, the new value of every key changed, or a deletion mark. The durable store
// (store_wal.go) keeps the newest layer (top) and, while a flush writes it to bbolt, the
// one before it (mid); reads see top over mid over bbolt.
type layer struct {
	from    uint64                                // log position of its first record (after the flush before it)
	buckets [bucketCount]*btree.BTreeG[layerItem] // but the log bucket's
	log     logLayer                              // the log bucket's (layer_log.go)
	bytes   int                                   // approximate size of what the layer holds
}

type layerItem struct {
	key string
	val []byte // nil with del
	del bool
}

func lessItem(a, b layerItem) bool { return a.key < b.key }

func newLayer() *layer {
	l := &layer{}
	for i := range l.buckets {
		if i != bucketLog {
			l.buckets[i] = btree.NewG(32, lessItem)
		}
	}
	return l
}

func (l *layer) empty() bool {
	if !l.log.empty() {
		return false
	}
	for _, b := range l.buckets {
		if b != nil && b.Len() > 0 {
			return false
		}
	}
	return true
}

// layerItemOverhead approximates the memory of one item beyond its key and value.
const layerItemOverhead = 64

func (l *layer) set(bucket int, key []byte, val []byte, del bool) {
	l.setKey(bucket, string(key), val, del)
}

func (l *layer) setKey(bucket int, key string, val []byte, del bool) {
	it := layerItem{key: key, val: val, del: del}
	if old, ok := l.buckets[bucket].ReplaceOrInsert(it); ok {
		l.bytes -= len(old.key) + len(old.val) + layerItemOverhead
	}
	l.bytes += len(it.key) + len(it.val) + layerItemOverhead
}

// writeTo stores the layer's changes in the group's bbolt buckets, but for its log
// entries: those go as carried entries (layer_carry.go), kept in memory or written by
// writeCarried.
func (l *layer) writeTo(bk *groupBuckets) error {
	if p, ok := bk.log.(interface{ packFull() }); ok {
		// Log keys only ever grow (seqs), and leave from the front: full pages, not
		// bbolt's default of half-full ones, mean half the pages to write.
		p.packFull()
	}
	if err := l.log.writeGone(bk.log); err != nil {
		return err
	}
	for i, b := range l.buckets {
		if b == nil {
			continue
		}
		kv := *bucketField(bk, i)
		var err error
		b.Ascend(func(it layerItem) bool {
			if it.del {
				err = kv.del([]byte(it.key))
			} else {
				err = kv.put([]byte(it.key), it.val)
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// layerKV is one bucket seen through the layers: top first, then mid, then the state
// store's bucket, which is opened (a bbolt read transaction) only when a read reaches it.
// Writes go to top. Values handed to put must not be modified afterwards.
type layerKV struct {
	bucket int
	top    *layer
	mid    *layer     // may be nil
	view   *layerView // opens the base
}

// layerView is a group's buckets through its layers, for one read or write: one
// allocation for all of them.
type layerView struct {
	kv      [bucketCount]layerKV
	bk      groupBuckets
	tx      func() *bolt.Tx // opens (once) the read transaction the base is read through
	name    []byte
	carried []*logLayer       // the log entries flushes kept out of bbolt, newest first
	empty   [bucketCount]bool // bbolt's bucket holds no key
	opened  bool
	topBase *bolt.Bucket
}

func (k *layerKV) base() *bolt.Bucket {
	v := k.view
	if v.empty[k.bucket] {
		return nil
	}
	if !v.opened {
		v.opened = true
		if t := v.tx(); t != nil {
			v.topBase = t.Bucket(v.name)
		}
	}
	if v.topBase == nil {
		return nil
	}
	return v.topBase.Bucket([]byte(subBucketNames[k.bucket]))
}

func (k *layerKV) lookup(key []byte) (layerItem, bool) {
	probe := layerItem{key: string(key)}
	if it, ok := k.top.buckets[k.bucket].Get(probe); ok {
		return it, true
	}
	if k.mid != nil {
		if it, ok := k.mid.buckets[k.bucket].Get(probe); ok {
			return it, true
		}
	}
	return layerItem{}, false
}

func (k *layerKV) get(key []byte) []byte {
	if k.bucket == bucketLog {
		return k.logGet(key)
	}
	if it, ok := k.lookup(key); ok {
		return it.val // nil when deleted
	}
	if b := k.base(); b != nil {
		return b.Get(key)
	}
	return nil
}

func (k *layerKV) put(key, v []byte) error {
	if k.bucket == bucketLog {
		return k.logPut(key, v)
	}
	k.top.set(k.bucket, key, v, false)
	return nil
}

func (k *layerKV) putKey(key string, v []byte) error {
	if k.bucket == bucketLog {
		return k.logPut([]byte(key), v)
	}
	k.top.setKey(k.bucket, key, v, false)
	return nil
}

func (k *layerKV) delKey(key string) error {
	if k.bucket == bucketLog {
		return k.logDel([]byte(key))
	}
	k.top.setKey(k.bucket, key, nil, true)
	return nil
}

func (k *layerKV) del(key []byte) error {
	if k.bucket == bucketLog {
		return k.logDel(key)
	}
	k.top.set(k.bucket, key, nil, true)
	return nil
}

// each merges the layers and the base in key order; for a key in several, the upper one
// wins, and a deletion mark hides the key.
func (k *layerKV) each(from []byte, fn func(k, v []byte) (bool, error)) error {
	if k.bucket == bucketLog {
		return k.logEach(from, fn)
	}
	srcs := []*itemIter{{t: k.top.buckets[k.bucket], next: string(from)}}
	if k.mid != nil {
		srcs = append(srcs, &itemIter{t: k.mid.buckets[k.bucket], next: string(from)})
	}
	var c *bolt.Cursor
	var ck, cv []byte
	if b := k.base(); b != nil {
		c = b.Cursor()
		if from == nil {
			ck, cv = c.First()
		} else {
			ck, cv = c.Seek(from)
		}
	}
	for {
		// The smallest key among the layers (upper layers first on ties).
		var best *layerItem
		for _, s := range srcs {
			if it := s.peek(); it != nil && (best == nil || it.key < best.key) {
				best = it
			}
		}
		if best == nil && ck == nil {
			return nil
		}
		if best == nil || (ck != nil && bytes.Compare(ck, []byte(best.key)) < 0) {
			more, err := fn(ck, cv)
			if err != nil || !more {
				return err
			}
			ck, cv = c.Next()
			continue
		}
		it := *best
		for _, s := range srcs {
			if p := s.peek(); p != nil && p.key == it.key {
				s.advance()
			}
		}
		if ck != nil && string(ck) == it.key {
			ck, cv = c.Next()
		}
		if it.del {
			continue
		}
		more, err := fn([]byte(it.key), it.val)
		if err != nil || !more {
			return err
		}
	}
}

// itemIter pulls a btree's items in order from a key, a chunk at a time.
type itemIter struct {
	t    *btree.BTreeG[layerItem]
	next string // the smallest key not yet read into buf
	buf  []layerItem
	i    int
	done bool
}

const iterChunk = 128

func (it *itemIter) peek() *layerItem {
	if it.i < len(it.buf) {
		return &it.buf[it.i]
	}
	if it.done {
		return nil
	}
	it.buf, it.i = it.buf[:0], 0
	it.t.AscendGreaterOrEqual(layerItem{key: it.next}, func(x layerItem) bool {
		it.buf = append(it.buf, x)
		return len(it.buf) < iterChunk
	})
	if len(it.buf) < iterChunk {
		it.done = true
	}
	if len(it.buf) == 0 {
		return nil
	}
	it.next = it.buf[len(it.buf)-1].key + "\x00" // the smallest key above the last read
	return &it.buf[0]
}

func (it *itemIter) advance() { it.i++ }
