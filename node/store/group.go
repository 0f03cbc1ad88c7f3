package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// ErrNoCopy is returned by a GroupStore whose group was dropped (or never created).
var ErrNoCopy = errors.New("no copy of this group")

// ErrCompacted is returned by Entries when part of the range is below the log's FirstSeq:
// the caller needs a snapshot, not entries.
var ErrCompacted = sibling.ErrCompacted

// storeKV is one ordered bucket of a group's copy, seen inside one transaction. bbolt buckets
// and the memory store's sorted maps both implement it, so that every rule about what a
// batch may do, and how state is encoded, is written once (this file and store_batch.go)
// and the contract tests exercise the same code on both stores.
type storeKV interface {
	// get returns the value under k or nil. It is only valid inside the transaction.
	get(k []byte) []byte
	// put and del copy what they keep of k: callers reuse its bytes.
	put(k, v []byte) error
	del(k []byte) error
	// putKey and delKey are put and del of a key a batch's op holds as a string (a rid or
	// a dedupe key), so that storing it in a layer copies nothing.
	putKey(k string, v []byte) error
	delKey(k string) error
	// each calls fn for every key >= from (all keys when from is nil), ascending, until fn
	// returns false or an error. fn must not modify the bucket.
	each(from []byte, fn func(k, v []byte) (bool, error)) error
}

// groupBuckets are the buckets of one group's copy:
//
//	log        8-byte big-endian seq -> 8-byte big-endian epoch + entry data
//	meta       one key per scalar Meta field (8-byte big-endian, copyID as text)
//	epochs     8-byte big-endian epoch -> 8-byte big-endian first seq (the epoch history)
//	resources  rid -> JSON command.Resource
//	tombstones rid -> JSON command.Tombstone
//	dedupe     key -> JSON command.DedupeRecord
//	tickets    rid -> JSON command.TicketState (the fence counter and the live ticket)
type groupBuckets struct {
	log, meta, epochs, resources, tombstones, dedupe, tickets storeKV
	// reset empties sub-bucket i (subBucketNames order) in the current update
	// transaction and returns it afresh; bbolt frees the pages at once.
	reset func(i int) (storeKV, error)
}

// subBucketNames lists the buckets in groupBuckets order; bbolt names its sub-buckets so.
var subBucketNames = []string{"log", "meta", "epochs", "resources", "tombstones", "dedupe", "tickets"}

// groupTxns runs a function over one group's buckets in a read-only (view) or read-write
// (update) transaction. An update whose function returns an error changes nothing in bbolt;
// the memory store has no rollback, which is why Write validates and encodes the whole
// batch before its first mutation (see planBatch).
type groupTxns interface {
	view(fn func(*groupBuckets) error) error
	update(fn func(*groupBuckets) error) error
	// snapshot opens a read-only view that stays consistent until release is called,
	// however long that is and whatever is written meanwhile. size estimates the bytes
	// of the view from above, cheaply (0: unknown).
	snapshot() (bk *groupBuckets, size uint64, release func(), err error)
}

// Meta keys. LastEpoch is not stored: it is the epoch of LastSeq in the epoch history,
// which keeps the two from ever disagreeing.
var (
	metaKeyEpoch     = []byte("epoch")
	metaKeyFirstSeq  = []byte("firstSeq")
	metaKeyLastSeq   = []byte("lastSeq")
	metaKeyCommitSeq = []byte("commitSeq")
	metaKeyApplied   = []byte("applied")
	metaKeyCopyID    = []byte("copyID")
)

func beU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeU64(what string, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%s: stored value has %d bytes, want 8", what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// newCopyID returns 128 random bits in hex: a copy made on another disk (or after a wipe)
// must never get the same ID, so it is random rather than derived from anything.
func newCopyID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make copy ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// initGroup writes the meta of a new, empty copy.
func initGroup(bk *groupBuckets) error {
	id, err := newCopyID()
	if err != nil {
		return err
	}
	if err := bk.meta.put(metaKeyCopyID, []byte(id)); err != nil {
		return err
	}
	return writeGroupMeta(bk, &Meta{FirstSeq: 1})
}

func readGroupMeta(bk *groupBuckets) (Meta, error) {
	m := Meta{FirstSeq: 1}
	fields := []struct {
		key []byte
		dst *uint64
	}{
		{metaKeyEpoch, &m.Epoch}, {metaKeyFirstSeq, &m.FirstSeq}, {metaKeyLastSeq, &m.LastSeq},
		{metaKeyCommitSeq, &m.CommitSeq}, {metaKeyApplied, &m.Applied},
	}
	for _, f := range fields {
		v := bk.meta.get(f.key)
		if v == nil {
			continue
		}
		n, err := decodeU64("meta "+string(f.key), v)
		if err != nil {
			return Meta{}, err
		}
		*f.dst = n
	}
	m.CopyID = string(bk.meta.get(metaKeyCopyID))
	m.Resyncing = bk.meta.get(metaKeyResyncID) != nil
	err := bk.epochs.each(nil, func(k, v []byte) (bool, error) {
		e, err := decodeU64("epoch history key", k)
		if err != nil {
			return false, err
		}
		s, err := decodeU64(fmt.Sprintf("epoch history of epoch %d", e), v)
		if err != nil {
			return false, err
		}
		m.EpochHistory = append(m.EpochHistory, sibling.EpochStart{Epoch: e, FirstSeq: s})
		return true, nil
	})
	if err != nil {
		return Meta{}, err
	}
	m.LastEpoch = historyEpochAt(m.EpochHistory, m.LastSeq)
	return m, nil
}

// writeGroupMeta stores the scalar fields; the history and the copy ID are written elsewhere.
func writeGroupMeta(bk *groupBuckets, m *Meta) error {
	for _, f := range []struct {
		key []byte
		v   uint64
	}{
		{metaKeyEpoch, m.Epoch}, {metaKeyFirstSeq, m.FirstSeq}, {metaKeyLastSeq, m.LastSeq},
		{metaKeyCommitSeq, m.CommitSeq}, {metaKeyApplied, m.Applied},
	} {
		if err := bk.meta.put(f.key, beU64(f.v)); err != nil {
			return fmt.Errorf("write meta %s: %w", f.key, err)
		}
	}
	return nil
}

// historyEpochAt returns the epoch seq was written in according to history (entry epochs never
// decrease along the log, and history records every increase), or 0 for seq 0 or a seq
// before the first record.
func historyEpochAt(history []sibling.EpochStart, seq uint64) uint64 {
	for i := len(history) - 1; i >= 0; i-- {
		if history[i].FirstSeq <= seq {
			return history[i].Epoch
		}
	}
	return 0
}

// groupStore is the GroupStore of both implementations; only the transactions differ.
type groupStore struct {
	g    command.ServerID
	txns groupTxns
	// checkFromLog: a batch's ApplyFromLog promise is checked before it changes anything
	// (the memory store, which tests run the node on).
	checkFromLog bool
}

// shared returns the group logic both stores' handles are built on (a durable store's
// handle embeds it): a read of several buckets in one view goes through it.
func (s *groupStore) shared() *groupStore { return s }

func (s *groupStore) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("group %d: %w", s.g, err)
}

func (s *groupStore) Meta() (Meta, error) {
	var m Meta
	err := s.txns.view(func(bk *groupBuckets) error {
		var err error
		m, err = readGroupMeta(bk)
		return err
	})
	return m, s.wrap(err)
}

// Write validates and encodes the whole batch against the current meta first (planBatch),
// and only then mutates, all in one update transaction: in bbolt that is one commit and one
// fsync for the whole batch, which is the group commit point.
func (s *groupStore) Write(b *Batch) error {
	if b == nil {
		return fmt.Errorf("group %d: nil batch", s.g)
	}
	return s.wrap(s.txns.update(func(bk *groupBuckets) error {
		m, err := readGroupMeta(bk)
		if err != nil {
			return err
		}
		p, err := planBatch(m, b)
		if err != nil {
			return err
		}
		if s.checkFromLog && b.ApplyFromLog {
			if err := checkApplyFromLog(bk, b); err != nil {
				return err
			}
		}
		return p.execute(bk)
	}))
}

// Entries returns entries from..to clipped to the log's last seq. maxBytes <= 0 means no
// limit; otherwise the data of the returned entries never exceeds maxBytes, except that the
// first entry is always returned whatever its size so that a caller always makes progress.
func (s *groupStore) Entries(from, to uint64, maxBytes int) ([]sibling.Entry, error) {
	var out []sibling.Entry
	err := s.txns.view(func(bk *groupBuckets) error {
		m, err := readGroupMeta(bk)
		if err != nil {
			return err
		}
		from = max(from, 1) // seq 0 never exists
		if from < m.FirstSeq {
			return fmt.Errorf("entries from seq %d: first seq is %d: %w", from, m.FirstSeq, ErrCompacted)
		}
		to = min(to, m.LastSeq)
		if from > to {
			return nil
		}
		size := 0
		return bk.log.each(beU64(from), func(k, v []byte) (bool, error) {
			seq, err := decodeU64("log key", k)
			if err != nil {
				return false, err
			}
			if seq > to {
				return false, nil
			}
			if len(v) < 8 {
				return false, fmt.Errorf("log entry %d: stored value has %d bytes, want >= 8", seq, len(v))
			}
			if maxBytes > 0 && len(out) > 0 && size+len(v)-8 > maxBytes {
				return false, nil
			}
			size += len(v) - 8
			e := sibling.Entry{Epoch: binary.BigEndian.Uint64(v[:8]), Seq: seq}
			if len(v) > 8 {
				e.Data = append([]byte(nil), v[8:]...) // v is only valid in the transaction
			}
			out = append(out, e)
			return true, nil
		})
	})
	return out, s.wrap(err)
}

func (s *groupStore) Resource(rid string) (*command.Resource, *command.Tombstone, error) {
	var res *command.Resource
	var ts *command.Tombstone
	err := s.txns.view(func(bk *groupBuckets) error {
		if v := bk.resources.get([]byte(rid)); v != nil {
			r, err := command.DecodeStoredResource(v)
			if err != nil {
				return fmt.Errorf("decode resource %q: %w", rid, err)
			}
			res = r
			return nil
		}
		if v := bk.tombstones.get([]byte(rid)); v != nil {
			ts = new(command.Tombstone)
			if err := json.Unmarshal(v, ts); err != nil {
				return fmt.Errorf("decode tombstone %q: %w", rid, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, s.wrap(err)
	}
	return res, ts, nil
}

func (s *groupStore) Dedupe(key string) (*command.DedupeRecord, error) {
	var rec *command.DedupeRecord
	err := s.txns.view(func(bk *groupBuckets) error {
		v := bk.dedupe.get([]byte(key))
		if v == nil {
			return nil
		}
		rec = new(command.DedupeRecord)
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("decode dedupe record %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	return rec, nil
}

// List scans resources in rid byte order from just after `after`. limit <= 0 means no
// limit. The type filter needs the decoded resource, so a filtered list reads every
// resource after `after` until it has limit matches.
func (s *groupStore) List(typ, after string, limit int) ([]command.Resource, error) {
	var out []command.Resource
	err := s.txns.view(func(bk *groupBuckets) error {
		var from []byte
		if after != "" {
			from = append([]byte(after), 0) // the smallest key above after
		}
		return bk.resources.each(from, func(k, v []byte) (bool, error) {
			r, err := command.DecodeStoredResource(v)
			if err != nil {
				return false, fmt.Errorf("decode resource %q: %w", k, err)
			}
			if typ != "" && r.Type != typ {
				return true, nil
			}
			out = append(out, *r)
			return limit <= 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	return out, nil
}
