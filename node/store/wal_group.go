package store

import (
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/sibylhq/sibyl/node/wal"
)

// walGroupStore is a group's GroupStore in the durable store: the shared group logic
// (store_group.go) over walGroup's transactions, with its own Write and Meta.
type walGroupStore struct {
	*groupStore
	wg  *walGroup
	buf []byte // the record being encoded; guarded by wg.wmu
}

func (g *walGroup) handle() GroupStore {
	return &walGroupStore{groupStore: &groupStore{g: g.id, txns: g}, wg: g}
}

// layered returns the group's buckets as the layers over bbolt; tx opens (once) the read
// transaction the base is read through. Call with g.lmu held.
func (g *walGroup) layered(tx func() *bolt.Tx) *groupBuckets {
	return g.layeredInto(new(layerView), tx)
}

// layeredInto is layered building the view in v.
func (g *walGroup) layeredInto(v *layerView, tx func() *bolt.Tx) *groupBuckets {
	*v = layerView{tx: tx, name: g.name, empty: g.baseEmpty, carried: g.carriedView}
	for i := range v.kv {
		v.kv[i] = layerKV{bucket: i, top: g.top, mid: g.mid, view: v}
	}
	v.bk = groupBuckets{log: &v.kv[0], meta: &v.kv[1], epochs: &v.kv[2], resources: &v.kv[3],
		tombstones: &v.kv[4], dedupe: &v.kv[5], tickets: &v.kv[6]}
	return &v.bk
}

// readTx opens bbolt read transactions lazily for one view; done rolls back what was opened.
type readTx struct {
	db  *bolt.DB
	tx  *bolt.Tx
	err error
}

func (r *readTx) get() *bolt.Tx {
	if r.tx == nil && r.err == nil {
		r.tx, r.err = r.db.Begin(false)
	}
	return r.tx
}

func (r *readTx) done() {
	if r.tx != nil {
		r.tx.Rollback()
	}
}

// view runs fn over the layers and bbolt as they are now; writes wait until it returns.
func (g *walGroup) view(fn func(*groupBuckets) error) error {
	if g.s.isClosed() {
		return errStoreClosed
	}
	g.lmu.RLock()
	defer g.lmu.RUnlock()
	if g.dropped {
		return ErrNoCopy
	}
	sc := viewScratchPool.Get().(*viewScratch)
	sc.rt = readTx{db: g.s.db}
	err := fn(g.layeredInto(&sc.v, sc.tx))
	rterr := sc.rt.err
	sc.rt.done()
	sc.v, sc.rt = layerView{}, readTx{}
	viewScratchPool.Put(sc)
	if rterr != nil {
		return fmt.Errorf("read the state store: %w", rterr)
	}
	return err
}

// viewScratch is what a view needs beside the layers, kept for the next view: every
// execute reads through two views (a resource and its ticket), and they were about a
// twentieth of the bytes a write allocates. A view's buckets are valid only while its
// function runs (GroupStore's reads copy what they return), so reusing them is safe.
type viewScratch struct {
	v  layerView
	rt readTx
	tx func() *bolt.Tx // rt.get, bound once
}

var viewScratchPool = sync.Pool{New: func() any {
	sc := new(viewScratch)
	sc.tx = sc.rt.get
	return sc
}}

// update is a direct operation: the group's layer and fn's changes go to bbolt in one
// transaction, and the group's walPos moves to the log's end (every record of the group
// is in it, since wmu is held).
func (g *walGroup) update(fn func(*groupBuckets) error) error {
	s := g.s
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return g.directLocked(fn)
}

// directLocked runs a direct operation; call with s.flushMu and g.wmu held.
func (g *walGroup) directLocked(fn func(*groupBuckets) error) error {
	s := g.s
	if err := s.failure(); err != nil {
		return err
	}
	if err := s.faulted(); err != nil {
		return err
	}
	g.lmu.RLock()
	dropped := g.dropped
	g.lmu.RUnlock()
	if dropped {
		return ErrNoCopy
	}
	var empty [bucketCount]bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.opts.WAL.Faults.Check(wal.FaultCommit); err != nil {
			return err
		}
		top := tx.Bucket(g.name)
		if top == nil {
			return ErrNoCopy
		}
		bk, err := boltBuckets(top)
		if err != nil {
			return err
		}
		bk.reset = resetBoltBucket(top)
		// No flush runs (flushMu), so mid is nil: top and the carried entries hold every
		// unstored change.
		if err := g.top.writeTo(bk); err != nil {
			return err
		}
		if err := writeCarried(bk.log, planCarry(g.carried, g.top, 0, 0).write); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(bk); err != nil {
				return err
			}
		}
		empty, err = s.markStored(bk)
		return err
	})
	if err != nil {
		if isDiskError(err) {
			return s.setFault(err)
		}
		return err
	}
	g.lmu.Lock()
	g.top, g.meta, g.baseEmpty = newLayer(), nil, empty
	g.top.from = s.log.End()
	g.setCarried(nil)
	g.lmu.Unlock()
	return nil
}

// snapshot stores the group's layer, then holds a bbolt read transaction: a consistent read
// of the copy for as long as the caller keeps it.
func (g *walGroup) snapshot() (*groupBuckets, uint64, func(), error) {
	s := g.s
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if err := g.directLocked(nil); err != nil {
		return nil, 0, nil, err
	}
	return boltSnapshot(s.db, g.name)
}

// Meta answers from the meta the last write left, without reading the store.
func (w *walGroupStore) Meta() (Meta, error) {
	g := w.wg
	if g.s.isClosed() {
		return Meta{}, w.wrap(errStoreClosed)
	}
	g.lmu.RLock()
	if g.meta != nil && !g.dropped {
		m := *g.meta
		m.EpochHistory = slices.Clone(m.EpochHistory)
		if len(m.EpochHistory) == 0 {
			m.EpochHistory = nil // as read from the store
		}
		g.lmu.RUnlock()
		return m, nil
	}
	g.lmu.RUnlock()
	return w.groupStore.Meta()
}

// Write plans the batch, makes the plan durable in the log (sharing the fsync with every
// group writing meanwhile), then executes it on the layer. A batch that only commits,
// applies and compacts is not waited for (Batch.needsSync).
func (w *walGroupStore) Write(b *Batch) error {
	if b == nil {
		return fmt.Errorf("group %d: nil batch", w.g)
	}
	g, s := w.wg, w.wg.s
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if err := s.failure(); err != nil {
		return w.wrap(err)
	}
	if err := s.faulted(); err != nil {
		return w.wrap(err)
	}
	m, err := w.Meta()
	if err != nil {
		return err
	}
	p, err := planBatch(m, b)
	if err != nil {
		return w.wrap(err)
	}
	w.buf = encodePlan(w.buf[:0], g.id, p)
	var lsn uint64
	if b.needsSync() {
		lsn, err = s.log.Append(w.buf)
	} else {
		lsn, err = s.log.AppendLazy(w.buf)
	}
	if err != nil {
		// Nothing of the batch is durable or applied (wal.Log drops a failed record).
		return w.wrap(s.setFault(fmt.Errorf("write-ahead log: %w", err)))
	}
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not pin a large record's buffer
	}
	g.lmu.Lock()
	rt := &readTx{db: s.db}
	err = p.execute(g.layered(rt.get))
	rt.done()
	if err == nil && rt.err != nil {
		err = rt.err
	}
	if err == nil {
		nm := p.meta
		g.meta = &nm
	}
	g.lmu.Unlock()
	if err != nil {
		// The record is durable but the layer is not what it says: stop taking writes; a
		// restart replays the record.
		return w.wrap(s.fail(fmt.Errorf("execute a logged batch: %w", err)))
	}
	s.noteWrite(lsn)
	return nil
}
