package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/wal"
)

// The durable store: a write-ahead log (package wal) in front of the bbolt state store.
//
// A Write plans the batch (planBatch), appends the plan to the node's log, which is shared
// by every group and made durable by group commit (one write and one fdatasync for every
// group's batches that queued meanwhile), and then executes the plan on the group's
// in-memory layer. Reads see the layer over bbolt. A flusher writes the layers to bbolt in
// one transaction when the log has grown by FlushBytes since the last flush (or
// FlushEvery has passed), records in each group's meta the log position the group's state
// includes (walPos), and removes the log segments every group has stored. A key written
// many times between flushes reaches bbolt once, and log entries compacted before a flush
// never reach it.
//
// Boot opens bbolt and replays the log records after each group's walPos into its layer,
// so recovery reads at most about FlushBytes of log.
//
// Operations that replace much of a copy at once (creating or dropping a group, Reset,
// the steps of a resync) and Snapshot write the group's layer and their own change to
// bbolt directly, in one transaction, and move the group's walPos to the log's end.
//
// Locks, in the order they are taken: walStore.flushMu (a flush or a direct operation),
// walGroup.wmu (one writer per group, held across the log append), walGroup.lmu (the
// layers and the cached meta; readers share it), walStore.mu (the group map).

// Defaults of DurableOptions.
const (
	DefaultFlushBytes = 16 << 20
	DefaultFlushEvery = 10 * time.Second
)

// DurableOptions tune OpenDurable; zero values take the defaults.
type DurableOptions struct {
	// FlushBytes of log since the last flush start the next one: the most a boot replays.
	FlushBytes int64
	// FlushEvery starts a flush of whatever changed after this long without one.
	FlushEvery time.Duration
	// WAL configures the log (segment size; injected disk faults for tests, which fail
	// the state store's commits too, at wal.FaultCommit).
	WAL wal.Options
	// HealEvery is how often a store whose disk failed tries it again (default
	// DefaultHealEvery).
	HealEvery time.Duration
	// KeepFlushes is how many flushes keep a layer's log entries in memory before one
	// writes those not compacted meanwhile (layer_carry.go); default DefaultKeepFlushes,
	// negative: none.
	KeepFlushes int
}

type walStore struct {
	db   *bolt.DB
	log  *wal.Log
	opts DurableOptions

	flushMu sync.Mutex // held by a flush and by every direct operation

	mu        sync.Mutex
	groups    map[command.ServerID]*walGroup
	flushedAt uint64 // log position of the last flush
	failed    error  // sticky: a logged batch could not be executed (a bug, not the disk)
	// fault: the disk failed (a log write or sync, a segment, a bbolt commit); writes are
	// refused until heal succeeds (fault.go). faultChanged is closed when fault changes.
	fault        error
	faultChanged chan struct{}
	closed       bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	replayed ReplayStats
	flushes  FlushStats // guarded by mu
}

// ReplayStats say what a boot read from the log.
type ReplayStats struct {
	// Records read; records applied whole; records of which only the log entries were
	// applied (the state store held the rest, layer_carry.go). The rest were stored.
	Records, Applied, LogOnly uint64
	Bytes                     uint64
}

// walGroup is one group's copy in the durable store.
type walGroup struct {
	s    *walStore
	id   command.ServerID
	name []byte

	wmu sync.Mutex // one write (or direct operation) at a time

	lmu sync.RWMutex
	top *layer
	mid *layer // being flushed; nil otherwise
	// carried: log entries flushes kept out of bbolt, oldest generation first, and the
	// same newest first for reads (layer_carry.go). Changed under flushMu and lmu.
	carried     []*carryGen
	carriedView []*logLayer
	meta        *Meta // the meta after the last write, nil when it must be read
	dropped     bool
	// baseEmpty: bbolt's bucket i holds no key, so a key absent from the layers is absent
	// (a write's lookups of tickets, tombstones and keys skip bbolt's read transaction).
	baseEmpty [bucketCount]bool
}

// markStored ends a direct operation's transaction: the group's state in bbolt, its log
// entries included, now holds every record logged so far (the caller holds the group's
// wmu), and the emptiness of its buckets is returned for the layered reads.
func (s *walStore) markStored(bk *groupBuckets) ([bucketCount]bool, error) {
	end := beU64(s.log.End())
	if err := bk.meta.put(metaKeyWALPos, end); err != nil {
		return [bucketCount]bool{}, err
	}
	if err := bk.meta.put(metaKeyLogPos, end); err != nil {
		return [bucketCount]bool{}, err
	}
	return emptyBuckets(bk), nil
}

// setCarried replaces the group's carried generations; call with lmu held.
func (g *walGroup) setCarried(gens []*carryGen) {
	g.carried, g.carriedView = gens, carriedLayers(gens)
}

// emptyBuckets reports which of a group's bbolt buckets hold no key.
func emptyBuckets(bk *groupBuckets) [bucketCount]bool {
	var out [bucketCount]bool
	for i := range out {
		out[i] = true
		_ = (*bucketField(bk, i)).each(nil, func(k, v []byte) (bool, error) {
			out[i] = false
			return false, nil
		})
	}
	return out
}

var metaKeyWALPos = []byte("walPos")

// OpenDurable opens (creating if needed) the node's store in dir: the state store
// dir/sibyl.db and the log dir/wal. An acked write survives a crash (docs/replication.md case
// 5): it is in the log, fsynced, before Write returns.
func OpenDurable(dir string, opts DurableOptions) (Store, error) {
	if opts.FlushBytes <= 0 {
		opts.FlushBytes = DefaultFlushBytes
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.HealEvery <= 0 {
		opts.HealEvery = DefaultHealEvery
	}
	switch {
	case opts.KeepFlushes == 0:
		opts.KeepFlushes = DefaultKeepFlushes
	case opts.KeepFlushes < 0:
		opts.KeepFlushes = 0
	}
	db, err := openStateDB(filepath.Join(dir, "sibyl.db"))
	if err != nil {
		return nil, err
	}
	s := &walStore{db: db, opts: opts, groups: map[command.ServerID]*walGroup{}, faultChanged: make(chan struct{}),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	pos := map[command.ServerID]uint64{}    // walPos: the group's state in bbolt includes the log to here
	logPos := map[command.ServerID]uint64{} // and its log entries to here
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, top *bolt.Bucket) error {
			g, ok := parseGroupBucket(name)
			if !ok {
				return nil
			}
			wg := &walGroup{s: s, id: g, name: groupBucketName(g), top: newLayer()}
			s.groups[g] = wg
			if bk, err := boltBuckets(top); err == nil {
				wg.baseEmpty = emptyBuckets(bk)
			}
			if meta := top.Bucket([]byte("meta")); meta != nil {
				if v := meta.Get(metaKeyWALPos); len(v) == 8 {
					pos[g], _ = decodeU64("walPos", v)
				}
				logPos[g] = pos[g]
				if v := meta.Get(metaKeyLogPos); len(v) == 8 {
					lp, _ := decodeU64("logPos", v)
					logPos[g] = min(lp, pos[g])
				}
			}
			wg.top.from = logPos[g]
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	for g := range s.groups {
		if err := addMissingBuckets(db, groupBucketName(g)); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: group %d: %w", dir, g, err)
		}
	}
	// Replay reads bbolt through one read transaction, for truncations and vacuums.
	rtx, err := db.Begin(false)
	if err != nil {
		db.Close()
		return nil, err
	}
	replay := func(lsn uint64, rec []byte) error {
		s.replayed.Records++
		s.replayed.Bytes += uint64(len(rec))
		g, p, err := decodePlan(rec)
		if err != nil {
			return fmt.Errorf("log record at %d: %w", lsn, err)
		}
		wg := s.groups[g]
		if wg == nil || lsn <= logPos[g] {
			return nil // dropped since, or already in the state store
		}
		bk := wg.layered(func() *bolt.Tx { return rtx })
		if lsn <= pos[g] {
			// The state store has all but the record's log entries.
			s.replayed.LogOnly++
			if err := p.executeLog(bk); err != nil {
				return fmt.Errorf("replay the log entries of record at %d for group %d: %w", lsn, g, err)
			}
			return nil
		}
		s.replayed.Applied++
		if err := p.execute(bk); err != nil {
			return fmt.Errorf("replay log record at %d for group %d: %w", lsn, g, err)
		}
		return nil
	}
	s.log, err = wal.Open(filepath.Join(dir, "wal"), opts.WAL, replay)
	rtx.Rollback()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	// Everything replayed counts towards the next flush.
	s.flushedAt = 0
	if len(pos) > 0 {
		s.flushedAt = s.log.End()
		for g := range s.groups {
			s.flushedAt = min(s.flushedAt, pos[g])
		}
	}
	go s.flusher()
	return s, nil
}

// openStateDB opens the bbolt file with the settings of OpenBolt.
func openStateDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// Replayed says what the last boot read from the log.
func (s *walStore) Replayed() ReplayStats { return s.replayed }

// FlushStats returns the flushes' counters.
func (s *walStore) FlushStats() FlushStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushes
}

// WALStats returns the log's counters.
func (s *walStore) WALStats() wal.Stats { return s.log.Stats() }

func (s *walStore) Groups() ([]command.ServerID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	gs := make([]command.ServerID, 0, len(s.groups))
	for g, wg := range s.groups {
		wg.lmu.RLock()
		if !wg.dropped {
			gs = append(gs, g)
		}
		wg.lmu.RUnlock()
	}
	slices.Sort(gs)
	return gs, nil
}

// Group returns the copy of g, creating it in bbolt first if needed. A group keeps one
// walGroup for the life of the store, so a handle taken before a drop sees the copy
// created after it, as a bbolt bucket name would.
func (s *walStore) Group(g command.ServerID) (GroupStore, error) {
	if g == 0 {
		return nil, fmt.Errorf("open group 0: server IDs are 1..65535")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("open group %d: %w", g, errStoreClosed)
	}
	if wg := s.live(g); wg != nil {
		return wg.handle(), nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	wg := s.groups[g]
	if wg == nil {
		wg = &walGroup{s: s, id: g, name: groupBucketName(g), top: newLayer(), dropped: true}
		s.groups[g] = wg
	}
	s.mu.Unlock()
	wg.wmu.Lock()
	defer wg.wmu.Unlock()
	wg.lmu.RLock()
	dropped := wg.dropped
	wg.lmu.RUnlock()
	if !dropped {
		return wg.handle(), nil // created meanwhile
	}
	var empty [bucketCount]bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(wg.name)
		if err != nil {
			return err
		}
		for _, sub := range subBucketNames {
			if _, err := top.CreateBucketIfNotExists([]byte(sub)); err != nil {
				return fmt.Errorf("create bucket %s: %w", sub, err)
			}
		}
		bk, err := boltBuckets(top)
		if err != nil {
			return err
		}
		if err := initGroup(bk); err != nil {
			return err
		}
		// Records of an earlier copy of this group (dropped since) are not this copy's.
		empty, err = s.markStored(bk)
		return err
	})
	if err != nil {
		if isDiskError(err) {
			err = s.setFault(err)
		}
		return nil, fmt.Errorf("create group %d: %w", g, err)
	}
	wg.lmu.Lock()
	wg.dropped, wg.top, wg.mid, wg.meta, wg.baseEmpty = false, newLayer(), nil, nil, empty
	wg.top.from = s.log.End()
	wg.setCarried(nil)
	wg.lmu.Unlock()
	return wg.handle(), nil
}

// live returns g's walGroup if the store holds a copy of g.
func (s *walStore) live(g command.ServerID) *walGroup {
	s.mu.Lock()
	wg := s.groups[g]
	s.mu.Unlock()
	if wg == nil {
		return nil
	}
	wg.lmu.RLock()
	defer wg.lmu.RUnlock()
	if wg.dropped {
		return nil
	}
	return wg
}

func (s *walStore) DropGroup(g command.ServerID) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	wg := s.live(g)
	if wg == nil {
		return nil // dropping a group we hold no copy of is already done
	}
	wg.wmu.Lock()
	defer wg.wmu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.DeleteBucket(wg.name)
		if err == bolt.ErrBucketNotFound {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop group %d: %w", g, err)
	}
	wg.lmu.Lock()
	wg.dropped, wg.top, wg.mid, wg.meta = true, newLayer(), nil, nil
	wg.setCarried(nil)
	wg.lmu.Unlock()
	return nil
}

// Close writes every layer to bbolt (so the next boot replays nothing) and closes both.
func (s *walStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	ferr := s.flush(0) // everything: the next boot replays nothing
	lerr := s.log.Close()
	derr := s.db.Close()
	return errors.Join(ferr, lerr, derr)
}

func (s *walStore) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = err
	}
	return s.failed
}

func (s *walStore) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// failure is why the store takes nothing more: a failed log write or flush, or Close.
func (s *walStore) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil && s.closed {
		return errStoreClosed
	}
	return s.failed
}

// noteWrite starts a flush when the log has grown enough since the last one.
func (s *walStore) noteWrite(lsn uint64) {
	s.mu.Lock()
	due := lsn-s.flushedAt >= uint64(s.opts.FlushBytes)
	s.mu.Unlock()
	if due {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// flusher flushes when the log has grown enough or FlushEvery passed; while the disk is
// faulted it tries it again every HealEvery instead (heal).
func (s *walStore) flusher() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	h := time.NewTicker(s.opts.HealEvery)
	defer h.Stop()
	for {
		healTick := false
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
		case <-h.C:
			healTick = true
		}
		if s.faulted() != nil {
			s.heal()
			continue
		}
		if healTick {
			continue // the heal ticker only matters while faulted
		}
		if err := s.flush(s.opts.KeepFlushes); err != nil {
			s.setFault(err)
		}
	}
}

// flush writes every group's layer to bbolt in one transaction. Writes go on meanwhile
// into fresh layers. The layers' log entries stay in memory for keepFlushes flushes
// (layer_carry.go); 0 writes them all.
func (s *walStore) flush(keepFlushes int) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return s.failed
	}
	if err := s.log.Fault(); err != nil {
		// The layers hold lazy records the log has not yet written: stored in bbolt with a
		// walPos past them, and then the log repaired, a boot would skip records after it.
		s.mu.Unlock()
		return err
	}
	groups := make([]*walGroup, 0, len(s.groups))
	for _, g := range s.groups {
		groups = append(groups, g)
	}
	s.mu.Unlock()
	type frozen struct {
		g     *walGroup
		pos   uint64
		carry carryPlan
	}
	var work []frozen
	low := uint64(0)
	changed := false
	for _, g := range groups {
		// Holding wmu, every record of g up to the log's end is in g's layer.
		g.wmu.Lock()
		g.lmu.Lock()
		if g.dropped {
			g.lmu.Unlock()
			g.wmu.Unlock()
			continue
		}
		pos := s.log.End()
		if !g.top.empty() || len(g.carried) > 0 {
			changed = true // carried entries age by one flush, idle or not
		}
		g.mid, g.top = g.top, newLayer()
		g.top.from = pos
		g.lmu.Unlock()
		g.wmu.Unlock()
		work = append(work, frozen{g: g, pos: pos})
		if len(work) == 1 || pos < low {
			low = pos
		}
	}
	// The log up to low is now in frozen layers: writes after it count towards the next
	// flush, and a kick sent for the log before it is answered by this one.
	s.mu.Lock()
	s.flushedAt = low
	s.mu.Unlock()
	select {
	case <-s.kick:
	default:
	}
	if !changed {
		for _, f := range work {
			f.g.lmu.Lock()
			f.g.mid = nil // empty: no record of the group since mid.from
			f.g.lmu.Unlock()
		}
		return nil
	}
	// Only this flush (flushMu) changes carried and mid.
	for i := range work {
		f := &work[i]
		f.carry = planCarry(f.g.carried, f.g.mid, f.pos, keepFlushes)
	}
	empties := make([][bucketCount]bool, len(work))
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.opts.WAL.Faults.Check(wal.FaultCommit); err != nil {
			return err
		}
		for i, f := range work {
			top := tx.Bucket(f.g.name)
			if top == nil {
				return fmt.Errorf("flush group %d: its bucket is missing", f.g.id)
			}
			bk, err := boltBuckets(top)
			if err != nil {
				return err
			}
			if err := f.g.mid.writeTo(bk); err != nil {
				return fmt.Errorf("flush group %d: %w", f.g.id, err)
			}
			if err := writeCarried(bk.log, f.carry.write); err != nil {
				return fmt.Errorf("flush group %d: %w", f.g.id, err)
			}
			if err := bk.meta.put(metaKeyWALPos, beU64(f.pos)); err != nil {
				return err
			}
			if err := bk.meta.put(metaKeyLogPos, beU64(f.carry.logPos)); err != nil {
				return err
			}
			empties[i] = emptyBuckets(bk)
		}
		return nil
	})
	lowLog := low
	for i, f := range work {
		f.g.lmu.Lock()
		if err != nil {
			// Keep the changes readable: put them back under whatever came since.
			f.g.top = mergeLayers(f.g.mid, f.g.top)
		} else {
			f.g.baseEmpty = empties[i]
			f.g.setCarried(f.carry.keep)
		}
		f.g.mid = nil
		f.g.lmu.Unlock()
		lowLog = min(lowLog, f.carry.logPos)
	}
	if err != nil {
		return fmt.Errorf("flush the state store: %w", err)
	}
	s.mu.Lock()
	s.flushes.Flushes++
	for _, f := range work {
		s.flushes.LogEntriesWritten += uint64(f.carry.written)
		s.flushes.LogEntriesDropped += uint64(f.carry.dropped)
	}
	s.mu.Unlock()
	// Segments that could not be removed now are removed by a later flush (it truncates
	// before a position at least this far): a leftover file costs disk and boot time, not
	// correctness, so it does not stop the store.
	_ = s.log.TruncateBefore(lowLog)
	return nil
}

// mergeLayers returns lower with upper's changes on top.
func mergeLayers(lower, upper *layer) *layer {
	upper.log.mergeInto(&lower.log)
	for i, b := range upper.buckets {
		if b == nil {
			continue
		}
		b.Ascend(func(it layerItem) bool {
			lower.setKey(i, it.key, it.val, it.del)
			return true
		})
	}
	return lower
}
