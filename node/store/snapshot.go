package store

import (
	"fmt"
	"io"
	"sync"

	resync "github.com/sibylhq/sibyl/sync"
)

// A snapshot carries the committed layer, bucket by bucket; the numbers are the Record
// buckets of the transfer. The log is not sent: the copy starts its own after the
// snapshot's seq, and the epoch history travels in the header.
var snapshotBuckets = []struct {
	num byte
	of  func(*groupBuckets) storeKV
	idx int // in subBucketNames
}{
	{1, resourcesOf, 3}, {2, tombstonesOf, 4}, {3, dedupeOf, 5}, {4, ticketsOf, 6},
}

// Meta keys of a resync under way: the snapshot's ID, and the position of the last record
// written. Their presence is the `resyncing` mark.
var (
	metaKeyResyncID  = []byte("resyncID")
	metaKeyResyncPos = []byte("resyncPos")
)

// Snapshot is a consistent read of a copy's committed layer at its applied seq, open until
// Close. It is the resync.Source a main streams to a copy that must be rebuilt.
type Snapshot struct {
	hdr     resync.Header
	mu      sync.Mutex
	bk      *groupBuckets
	release func()
}

// Snapshot opens a read of the committed layer; Header().Seq is the applied seq it shows.
// id names it for resumes. The caller fills in the header's Epoch and Main.
func (s *groupStore) Snapshot(id uint64) (*Snapshot, error) {
	bk, size, release, err := s.txns.snapshot()
	if err != nil {
		return nil, s.wrap(fmt.Errorf("open snapshot: %w", err))
	}
	m, err := readGroupMeta(bk)
	if err != nil {
		release()
		return nil, s.wrap(err)
	}
	if m.Resyncing {
		release()
		return nil, s.wrap(fmt.Errorf("open snapshot: the copy is itself being resynced"))
	}
	h := resync.Header{Group: uint16(s.g), ID: id, Seq: m.Applied, SeqEpoch: historyEpochAt(m.EpochHistory, m.Applied), Bytes: size}
	for _, es := range m.EpochHistory {
		if es.FirstSeq <= m.Applied {
			h.History = append(h.History, es)
		}
	}
	for _, b := range snapshotBuckets {
		if size > 0 {
			break
		}
		_ = b.of(bk).each(nil, func(k, v []byte) (bool, error) {
			h.Bytes += uint64(len(k) + len(v))
			return true, nil
		})
	}
	return &Snapshot{hdr: h, bk: bk, release: release}, nil
}

// Header describes the snapshot.
func (sn *Snapshot) Header() resync.Header { return sn.hdr }

// SetSender stamps the main's epoch and ID on the header.
func (sn *Snapshot) SetSender(epoch uint64, main uint16) { sn.hdr.Epoch, sn.hdr.Main = epoch, main }

// Read implements resync.Source. The records alias the read transaction's pages: they are
// valid until Close, and must not be modified.
func (sn *Snapshot) Read(after resync.Position, maxBytes, maxRecords int) ([]resync.Record, error) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.bk == nil {
		return nil, fmt.Errorf("read snapshot %x: closed", sn.hdr.ID)
	}
	var out []resync.Record
	size := 0
	for _, b := range snapshotBuckets {
		var from []byte
		switch {
		case len(after) == 0 || after[0] < b.num:
		case after[0] == b.num:
			from = append(append([]byte(nil), after[1:]...), 0) // just above the last key sent
		default:
			continue
		}
		full := false
		err := b.of(sn.bk).each(from, func(k, v []byte) (bool, error) {
			if len(out) > 0 && (len(out) >= maxRecords || size+len(k)+len(v) > maxBytes) {
				full = true
				return false, nil
			}
			size += len(k) + len(v)
			out = append(out, resync.Record{Bucket: b.num, Key: k, Value: v})
			return true, nil
		})
		if err != nil {
			return nil, err
		}
		if full {
			break
		}
	}
	if len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}

// Close ends the read; the store may reuse the pages it held.
func (sn *Snapshot) Close() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.bk != nil {
		sn.release()
		sn.bk = nil
	}
}

// BeginResync implements resync.Sink.Begin. Resuming the same snapshot returns the last
// position written. Otherwise one transaction marks the copy resyncing and wipes its log,
// epoch history and committed layer; the epoch and copy ID are kept (the epoch never
// decreases, and the copy is rebuilt from the current main's committed state, so it
// still holds everything it ever acknowledged once the snapshot is installed).
func (s *groupStore) BeginResync(h resync.Header) (resync.Position, error) {
	var pos resync.Position
	err := s.txns.update(func(bk *groupBuckets) error {
		if id := bk.meta.get(metaKeyResyncID); id != nil {
			n, err := decodeU64("meta resyncID", id)
			if err != nil {
				return err
			}
			if p := bk.meta.get(metaKeyResyncPos); n == h.ID && len(p) > 0 {
				pos = append(resync.Position(nil), p...)
				return nil
			}
		}
		m, err := readGroupMeta(bk)
		if err != nil {
			return err
		}
		if err := bk.meta.put(metaKeyResyncID, beU64(h.ID)); err != nil {
			return err
		}
		if err := bk.meta.del(metaKeyResyncPos); err != nil {
			return err
		}
		for i, name := range subBucketNames {
			if name == "meta" {
				continue
			}
			kv, err := bk.reset(i)
			if err != nil {
				return err
			}
			*bucketField(bk, i) = kv
		}
		return writeGroupMeta(bk, &Meta{Epoch: m.Epoch, FirstSeq: 1})
	})
	return pos, s.wrap(err)
}

// Reset implements GroupStore.Reset.
func (s *groupStore) Reset(epoch uint64) error {
	err := s.txns.update(func(bk *groupBuckets) error {
		for i := range subBucketNames {
			kv, err := bk.reset(i)
			if err != nil {
				return err
			}
			*bucketField(bk, i) = kv
		}
		if err := initGroup(bk); err != nil {
			return err
		}
		return writeGroupMeta(bk, &Meta{Epoch: epoch, FirstSeq: 1})
	})
	return s.wrap(err)
}

// bucketField returns the groupBuckets field of sub-bucket i.
func bucketField(bk *groupBuckets, i int) *storeKV {
	return []*storeKV{&bk.log, &bk.meta, &bk.epochs, &bk.resources, &bk.tombstones, &bk.dedupe, &bk.tickets}[i]
}

// WriteResync implements resync.Sink.Write: one transaction stores the records and the
// position of the last.
func (s *groupStore) WriteResync(recs []resync.Record) error {
	if len(recs) == 0 {
		return nil
	}
	err := s.txns.update(func(bk *groupBuckets) error {
		if bk.meta.get(metaKeyResyncID) == nil {
			return fmt.Errorf("write snapshot records: no resync under way")
		}
		for _, r := range recs {
			kv, err := snapshotBucket(bk, r.Bucket)
			if err != nil {
				return err
			}
			if p, ok := kv.(interface{ packFull() }); ok {
				p.packFull()
			}
			if err := checkKey("snapshot key", string(r.Key)); err != nil {
				return err
			}
			if err := kv.put(r.Key, r.Value); err != nil {
				return fmt.Errorf("write snapshot record %q: %w", r.Key, err)
			}
		}
		return bk.meta.put(metaKeyResyncPos, resync.PositionOf(recs[len(recs)-1]))
	})
	return s.wrap(err)
}

func snapshotBucket(bk *groupBuckets, num byte) (storeKV, error) {
	for _, b := range snapshotBuckets {
		if b.num == num {
			return b.of(bk), nil
		}
	}
	return nil, fmt.Errorf("snapshot record in unknown bucket %d", num)
}

// FinishResync implements resync.Sink.Finish: the copy becomes whole at h.Seq (committed
// and applied there, with an empty log continuing at h.Seq+1) and the mark goes.
func (s *groupStore) FinishResync(h resync.Header) error {
	err := s.txns.update(func(bk *groupBuckets) error {
		id := bk.meta.get(metaKeyResyncID)
		if id == nil {
			return fmt.Errorf("install snapshot %x: no resync under way", h.ID)
		}
		if n, err := decodeU64("meta resyncID", id); err != nil || n != h.ID {
			return fmt.Errorf("install snapshot %x: the copy is resyncing from snapshot %x", h.ID, n)
		}
		m, err := readGroupMeta(bk)
		if err != nil {
			return err
		}
		if h.Seq > 0 && historyEpochAt(h.History, h.Seq) != h.SeqEpoch {
			return fmt.Errorf("install snapshot %x: history gives seq %d epoch %d, header says %d",
				h.ID, h.Seq, historyEpochAt(h.History, h.Seq), h.SeqEpoch)
		}
		for _, es := range h.History {
			if err := bk.epochs.put(beU64(es.Epoch), beU64(es.FirstSeq)); err != nil {
				return err
			}
		}
		if err := bk.meta.del(metaKeyResyncID); err != nil {
			return err
		}
		if err := bk.meta.del(metaKeyResyncPos); err != nil {
			return err
		}
		return writeGroupMeta(bk, &Meta{Epoch: max(m.Epoch, h.SeqEpoch), FirstSeq: h.Seq + 1, LastSeq: h.Seq,
			CommitSeq: h.Seq, Applied: h.Seq})
	})
	return s.wrap(err)
}

// groupSink adapts a GroupStore to resync.Sink.
type groupSink struct{ gs GroupStore }

func (k groupSink) Begin(h resync.Header) (resync.Position, error) { return k.gs.BeginResync(h) }
func (k groupSink) Write(recs []resync.Record) error               { return k.gs.WriteResync(recs) }
func (k groupSink) Finish(h resync.Header) error                   { return k.gs.FinishResync(h) }
