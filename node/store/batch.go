package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// batchPlan is a batch that passed validation, with every value already encoded. Executing
// it can then fail only for reasons outside the batch (disk, bbolt), which bbolt rolls
// back; the memory store's mutations cannot fail. That is what makes a refused batch
// change nothing in either store.
type batchPlan struct {
	meta Meta // the meta after the batch (EpochHistory is informational here)
	// truncateLog, when > 0, is the first log seq to delete.
	truncateLog uint64
	// dropEpochs are history records to delete (their FirstSeq >= Truncate).
	dropEpochs []uint64
	addEpochs  []sibling.EpochStart
	entries    []sibling.Entry
	ops        []storeOp
	// applyFrom, when > 0, is the first seq the batch applies (the last is meta.Applied),
	// every one of them an entry of the log: its log record names these seqs instead of
	// carrying ops. 0 when the batch applies nothing or applies a seq its log lacks.
	applyFrom uint64
	// opsFromLog: the plan was read back from a log record, which names the applied seqs
	// instead of carrying ops; execute derives the ops from those seqs' log entries.
	opsFromLog bool
	// compactFrom..compactTo are log seqs to delete from the front (0, 0: none).
	compactFrom, compactTo uint64
	// seqKey holds the log key execute passes to put or del, which copy what they keep.
	seqKey [8]byte
}

// logKey is seq as a log key, in p's scratch: valid until the next call.
func (p *batchPlan) logKey(seq uint64) []byte {
	binary.BigEndian.PutUint64(p.seqKey[:], seq)
	return p.seqKey[:]
}

// maxStoreKeySize is bbolt's limit on a key. Checking it while planning keeps the memory
// store refusing exactly what bbolt would, and keeps the refusal before any mutation.
const maxStoreKeySize = 32768

func checkKey(what, key string) error {
	if len(key) > maxStoreKeySize {
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(key), maxStoreKeySize)
	}
	return nil
}

// storeOp is one change to the committed layer; val == nil deletes key. An op with vacuum
// set instead drops what the vacuum entry names, at its place among the batch's ops.
type storeOp struct {
	bucket int // in subBucketNames
	key    string
	val    []byte
	vacuum *command.Vacuum
}

func resourcesOf(bk *groupBuckets) storeKV  { return bk.resources }
func tombstonesOf(bk *groupBuckets) storeKV { return bk.tombstones }
func dedupeOf(bk *groupBuckets) storeKV     { return bk.dedupe }
func ticketsOf(bk *groupBuckets) storeKV    { return bk.tickets }

// Indexes of the buckets in subBucketNames.
const (
	bucketLog = iota
	bucketMeta
	bucketEpochs
	bucketResources
	bucketTombstones
	bucketDedupe
	bucketTickets
	bucketCount
)

// planBatch checks b against the current meta m in the order Write applies it (Truncate,
// Append, CommitSeq, Apply, Epoch) and returns what to change. Apply is checked against the
// CommitSeq this same batch sets, so that one batch can append, commit and apply.
func planBatch(m Meta, b *Batch) (*batchPlan, error) {
	if m.Resyncing {
		return nil, fmt.Errorf("the copy is being resynced from a snapshot; only the resync writes to it")
	}
	p := &batchPlan{meta: m, ops: make([]storeOp, 0, 2*len(b.Apply))}
	nm := &p.meta
	history := slices.Clone(m.EpochHistory)

	if b.Truncate > 0 {
		// Committed entries are never truncated: the committed layer was built from them
		// and cannot be undone (docs/replication.md case 4).
		if b.Truncate <= m.CommitSeq {
			return nil, fmt.Errorf("truncate at seq %d is at or below commit seq %d", b.Truncate, m.CommitSeq)
		}
		p.truncateLog = max(b.Truncate, m.FirstSeq)
		if p.truncateLog <= nm.LastSeq {
			nm.LastSeq = p.truncateLog - 1
		}
		for len(history) > 0 && history[len(history)-1].FirstSeq >= b.Truncate {
			p.dropEpochs = append(p.dropEpochs, history[len(history)-1].Epoch)
			history = history[:len(history)-1]
		}
	}

	prevEpoch := historyEpochAt(history, nm.LastSeq)
	for i, e := range b.Append {
		switch {
		case e.Epoch == 0:
			return nil, fmt.Errorf("append seq %d has epoch 0", e.Seq)
		case i > 0 && e.Seq != b.Append[i-1].Seq+1:
			return nil, fmt.Errorf("append seq %d does not follow seq %d of the same batch", e.Seq, b.Append[i-1].Seq)
		case i == 0 && nm.LastSeq >= nm.FirstSeq && e.Seq != nm.LastSeq+1:
			return nil, fmt.Errorf("append seq %d does not follow last seq %d", e.Seq, nm.LastSeq)
		case i == 0 && nm.LastSeq < nm.FirstSeq && e.Seq < nm.FirstSeq:
			return nil, fmt.Errorf("append seq %d is below first seq %d of the empty log", e.Seq, nm.FirstSeq)
		case i == 0 && nm.LastSeq > 0 && e.Seq != nm.LastSeq+1:
			// A log compacted (or installed from a snapshot) up to its last entry is empty
			// but still continues at LastSeq+1.
			return nil, fmt.Errorf("append seq %d does not follow last seq %d", e.Seq, nm.LastSeq)
		case e.Epoch < prevEpoch:
			return nil, fmt.Errorf("append seq %d has epoch %d, below epoch %d of the entry before it", e.Seq, e.Epoch, prevEpoch)
		}
		if i == 0 && nm.LastSeq == 0 && nm.LastSeq < nm.FirstSeq {
			// An empty log may start anywhere at or above FirstSeq; FirstSeq stays "the
			// first seq still in the log".
			nm.FirstSeq = e.Seq
		}
		if e.Epoch > prevEpoch {
			es := sibling.EpochStart{Epoch: e.Epoch, FirstSeq: e.Seq}
			history = append(history, es)
			p.addEpochs = append(p.addEpochs, es)
		}
		prevEpoch = e.Epoch
		nm.LastSeq = e.Seq
		nm.Epoch = max(nm.Epoch, e.Epoch)
	}
	p.entries = b.Append

	if b.CommitSeq > nm.CommitSeq {
		if b.CommitSeq > nm.LastSeq {
			return nil, fmt.Errorf("commit seq %d is beyond last seq %d", b.CommitSeq, nm.LastSeq)
		}
		nm.CommitSeq = b.CommitSeq
	}

	for _, a := range b.Apply {
		if a.Seq != nm.Applied+1 {
			return nil, fmt.Errorf("apply seq %d does not follow applied seq %d", a.Seq, nm.Applied)
		}
		if a.Seq > nm.CommitSeq {
			return nil, fmt.Errorf("apply seq %d is beyond commit seq %d", a.Seq, nm.CommitSeq)
		}
		ops, err := appendEffectStoreOps(p.ops, a.Seq, &a.Effect)
		if err != nil {
			return nil, fmt.Errorf("apply seq %d: %w", a.Seq, err)
		}
		p.ops = ops
		nm.Applied = a.Seq
	}

	if n := len(b.Apply); b.ApplyFromLog && n > 0 && b.Apply[0].Seq >= nm.FirstSeq && b.Apply[n-1].Seq <= nm.LastSeq {
		// The log holds FirstSeq..LastSeq, so it holds every applied entry: compaction
		// comes after applying, in this batch too.
		p.applyFrom = b.Apply[0].Seq
	}

	if b.Compact > 0 {
		if b.Compact > nm.Applied {
			return nil, fmt.Errorf("compact through seq %d is above applied seq %d", b.Compact, nm.Applied)
		}
		if b.Compact >= nm.FirstSeq {
			p.compactFrom, p.compactTo = nm.FirstSeq, b.Compact
			nm.FirstSeq = b.Compact + 1
		}
	}

	nm.Epoch = max(nm.Epoch, b.Epoch)
	nm.EpochHistory = history
	nm.LastEpoch = historyEpochAt(history, nm.LastSeq)
	return p, nil
}

// effectStoreOps turns the committed effect of entry seq into changes of the committed layer.
func effectStoreOps(seq uint64, e *command.Effect) ([]storeOp, error) {
	return appendEffectStoreOps(nil, seq, e)
}

// appendEffectStoreOps is effectStoreOps appending to ops.
func appendEffectStoreOps(ops []storeOp, seq uint64, e *command.Effect) ([]storeOp, error) {
	switch e.Kind {
	case command.EffectPut:
		if e.RID == "" || e.Resource == nil {
			return nil, fmt.Errorf("put effect needs a rid and a resource (rid %q, resource set: %t)", e.RID, e.Resource != nil)
		}
		if err := checkKey("rid", e.RID); err != nil {
			return nil, err
		}
		if e.Resource.ID != e.RID {
			return nil, fmt.Errorf("put effect for rid %q carries resource %q", e.RID, e.Resource.ID)
		}
		v := command.EncodeStoredResource(e.Resource)
		// A put never follows a delete of the same rid (rids are not reused), but if one
		// did, the tombstone must go so that Resource answers one state, not two.
		ops = append(ops, storeOp{bucket: bucketResources, key: e.RID, val: v}, storeOp{bucket: bucketTombstones, key: e.RID, val: nil})
	case command.EffectDelete:
		if e.RID == "" {
			return nil, fmt.Errorf("delete effect has no rid")
		}
		if err := checkKey("rid", e.RID); err != nil {
			return nil, err
		}
		v, err := json.Marshal(command.Tombstone{RID: e.RID, Version: e.Version, At: e.At, Seq: seq})
		if err != nil {
			return nil, fmt.Errorf("encode tombstone %q: %w", e.RID, err)
		}
		ops = append(ops, storeOp{bucket: bucketResources, key: e.RID, val: nil}, storeOp{bucket: bucketTombstones, key: e.RID, val: v})
	case command.EffectBarrier, command.EffectConfig, command.EffectNoop:
		// No resource changes; Applied still advances.
	case command.EffectVacuum:
		if e.Vacuum == nil {
			return nil, fmt.Errorf("vacuum effect carries no bounds")
		}
		ops = append(ops, storeOp{vacuum: e.Vacuum})
	case command.EffectTicket:
		if e.Ticket == nil {
			return nil, fmt.Errorf("ticket effect on rid %q carries no ticket", e.RID)
		}
	default:
		return nil, fmt.Errorf("unknown effect kind %d", e.Kind)
	}
	if e.Ticket != nil {
		op, err := ticketStoreOp(e)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	if e.Dedupe != nil {
		if e.Dedupe.Key == "" {
			return nil, fmt.Errorf("dedupe record has an empty key")
		}
		if err := checkKey("dedupe key", e.Dedupe.Key); err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.Dedupe)
		if err != nil {
			return nil, fmt.Errorf("encode dedupe record %q: %w", e.Dedupe.Key, err)
		}
		ops = append(ops, storeOp{bucket: bucketDedupe, key: e.Dedupe.Key, val: v})
	}
	return ops, nil
}

// execute performs the plan: Truncate, Append, Apply, then meta, as the contract orders.
func (p *batchPlan) execute(bk *groupBuckets) error {
	if err := p.truncate(bk); err != nil {
		return err
	}
	for _, e := range p.dropEpochs {
		if err := bk.epochs.del(beU64(e)); err != nil {
			return fmt.Errorf("drop epoch history of epoch %d: %w", e, err)
		}
	}
	for _, es := range p.addEpochs {
		if err := bk.epochs.put(beU64(es.Epoch), beU64(es.FirstSeq)); err != nil {
			return fmt.Errorf("add epoch history (%d, %d): %w", es.Epoch, es.FirstSeq, err)
		}
	}
	if err := p.appendEntries(bk); err != nil {
		return err
	}
	if p.opsFromLog {
		ops, err := opsOfLogEntries(bk, p.applyFrom, p.meta.Applied)
		if err != nil {
			return err
		}
		p.ops = ops
	}
	for _, op := range p.ops {
		if op.vacuum != nil {
			if err := vacuum(bk, op.vacuum); err != nil {
				return err
			}
			continue
		}
		b := *bucketField(bk, op.bucket)
		var err error
		if op.val == nil {
			err = b.delKey(op.key)
		} else {
			err = b.putKey(op.key, op.val)
		}
		if err != nil {
			return fmt.Errorf("apply to key %q: %w", op.key, err)
		}
	}
	if err := p.compact(bk); err != nil {
		return err
	}
	return writeGroupMeta(bk, &p.meta)
}

// opsOfLogEntries derives the ops of applying seqs from..to from the entries in bk's log:
// the entries a write applied are the log's own (Batch.Apply), appended by this record or
// an earlier one and compacted only by a later one, so they are there when a boot replays
// the record.
func opsOfLogEntries(bk *groupBuckets, from, to uint64) ([]storeOp, error) {
	var ops []storeOp
	for seq := from; from > 0 && seq <= to; seq++ {
		v := bk.log.get(beU64(seq))
		if len(v) < 8 {
			return nil, fmt.Errorf("apply seq %d: the log holds no entry at that seq", seq)
		}
		eo, err := entryStoreOps(seq, v[8:])
		if err != nil {
			return nil, err
		}
		ops = append(ops, eo...)
	}
	return ops, nil
}

// entryStoreOps is effectStoreOps of the effect that log entry seq's data encodes.
func entryStoreOps(seq uint64, data []byte) ([]storeOp, error) {
	e, err := command.DecodeEffect(data)
	if err != nil {
		return nil, fmt.Errorf("apply seq %d from the log: %w", seq, err)
	}
	ops, err := effectStoreOps(seq, &e)
	if err != nil {
		return nil, fmt.Errorf("apply seq %d from the log: %w", seq, err)
	}
	return ops, nil
}

// checkApplyFromLog checks b's ApplyFromLog promise against the log in bk (before b
// changes it): every applied effect must change the committed layer exactly as its log
// entry's effect does. An entry that b itself appends is taken from b.
func checkApplyFromLog(bk *groupBuckets, b *Batch) error {
	appended := map[uint64][]byte{}
	for _, e := range b.Append {
		appended[e.Seq] = e.Data
	}
	for i := range b.Apply {
		a := &b.Apply[i]
		data, ok := appended[a.Seq]
		if !ok && (b.Truncate == 0 || a.Seq < b.Truncate) {
			if v := bk.log.get(beU64(a.Seq)); len(v) >= 8 {
				data, ok = v[8:], true
			}
		}
		if !ok {
			return fmt.Errorf("apply seq %d from the log: the log holds no entry at that seq", a.Seq)
		}
		want, err := entryStoreOps(a.Seq, data)
		if err != nil {
			return err
		}
		got, err := effectStoreOps(a.Seq, &a.Effect)
		if err != nil {
			return fmt.Errorf("apply seq %d: %w", a.Seq, err)
		}
		if !sameOps(got, want) {
			return fmt.Errorf("apply seq %d: the effect applied is not the one its log entry holds", a.Seq)
		}
	}
	return nil
}

func sameOps(a, b []storeOp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.bucket != y.bucket || x.key != y.key || !bytes.Equal(x.val, y.val) || (x.val == nil) != (y.val == nil) ||
			(x.vacuum == nil) != (y.vacuum == nil) || (x.vacuum != nil && *x.vacuum != *y.vacuum) {
			return false
		}
	}
	return true
}

// executeLog does only p's changes of the log bucket, in the order execute does them: the
// replay of a record whose other changes the state store already holds (a flush kept its
// log entries in memory, layer_carry.go). No op of a plan names the log bucket.
func (p *batchPlan) executeLog(bk *groupBuckets) error {
	if err := p.truncate(bk); err != nil {
		return err
	}
	if err := p.appendEntries(bk); err != nil {
		return err
	}
	return p.compact(bk)
}

func (p *batchPlan) truncate(bk *groupBuckets) error {
	if p.truncateLog == 0 {
		return nil
	}
	var doomed [][]byte
	err := bk.log.each(beU64(p.truncateLog), func(k, _ []byte) (bool, error) {
		doomed = append(doomed, append([]byte(nil), k...)) // k is invalid after a delete
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range doomed {
		if err := bk.log.del(k); err != nil {
			return fmt.Errorf("truncate log at seq %d: %w", p.truncateLog, err)
		}
	}
	return nil
}

func (p *batchPlan) appendEntries(bk *groupBuckets) error {
	// One buffer holds the batch's stored entries (epoch, then data), each its own slice.
	n := 0
	for _, e := range p.entries {
		n += 8 + len(e.Data)
	}
	buf := make([]byte, 0, n)
	for _, e := range p.entries {
		start := len(buf)
		buf = binary.BigEndian.AppendUint64(buf, e.Epoch)
		buf = append(buf, e.Data...)
		v := buf[start:len(buf):len(buf)]
		if err := bk.log.put(p.logKey(e.Seq), v); err != nil {
			return fmt.Errorf("append seq %d: %w", e.Seq, err)
		}
	}
	return nil
}

func (p *batchPlan) compact(bk *groupBuckets) error {
	for seq := p.compactFrom; p.compactTo > 0 && seq <= p.compactTo; seq++ {
		if err := bk.log.del(p.logKey(seq)); err != nil {
			return fmt.Errorf("compact log at seq %d: %w", seq, err)
		}
	}
	return nil
}

// vacuum drops the tombstones and dedupe records v names.
func vacuum(bk *groupBuckets, v *command.Vacuum) error {
	var doomed [][]byte
	err := bk.tombstones.each(nil, func(k, val []byte) (bool, error) {
		var ts command.Tombstone
		if err := json.Unmarshal(val, &ts); err != nil {
			return false, fmt.Errorf("vacuum: decode tombstone %q: %w", k, err)
		}
		if ts.Seq <= v.Tombstones {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range doomed {
		if err := bk.tombstones.del(k); err != nil {
			return fmt.Errorf("vacuum tombstone %q: %w", k, err)
		}
	}
	doomed = doomed[:0]
	err = bk.dedupe.each(nil, func(k, val []byte) (bool, error) {
		var rec command.DedupeRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return false, fmt.Errorf("vacuum: decode dedupe record %q: %w", k, err)
		}
		if rec.Seq <= v.Dedupe {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range doomed {
		if err := bk.dedupe.del(k); err != nil {
			return fmt.Errorf("vacuum dedupe record %q: %w", k, err)
		}
	}
	return nil
}
