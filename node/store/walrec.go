package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// A write-ahead log record is one group's batch as planned (batchPlan), so replaying it
// repeats exactly what the write did without executing any command again.
//
//	u8 version (2) | uvarint group | meta: uvarint Epoch FirstSeq LastSeq CommitSeq Applied
//	uvarint truncateLog | uvarint n, n × uvarint dropped epoch
//	uvarint n, n × (uvarint epoch, uvarint first seq)
//	uvarint n, n × (uvarint epoch, uvarint seq, bytes data)
//	uvarint applyFrom | if applyFrom == 0: uvarint n, n × op
//	uvarint compactFrom | uvarint compactTo
//
// Applies are named, not copied: applyFrom > 0 says the batch applied the log's entries
// applyFrom..Applied, and a replay derives their changes of the committed layer from those
// entries (batchPlan.execute), which are in the log by then. That keeps each write's
// resource out of the log a second time: a record is about the size of its new entries.
// applyFrom == 0 is followed by the ops themselves (a batch that applies seqs its log does
// not hold, or applies nothing). Version 1 records always carry ops, without applyFrom;
// both versions are read.
//
// An op is u8 kind then its fields: put (bucket+1) bytes key, bytes value; delete
// (0x80|bucket+1) bytes key; vacuum (0xff) uvarint tombstones, uvarint dedupe. "bytes" is a
// uvarint length and the bytes.
const walRecordVersion = 2

const (
	opDeleteFlag = 0x80
	opVacuum     = 0xff
)

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodePlan appends the record of p for group g to buf.
func encodePlan(buf []byte, g command.ServerID, p *batchPlan) []byte {
	buf = binary.AppendUvarint(appendPlanHead(buf, walRecordVersion, g, p), p.applyFrom)
	if p.applyFrom == 0 {
		buf = appendOps(buf, p.ops)
	}
	return appendPlanTail(buf, p)
}

// appendPlanHead appends the fields every version starts with: up to the new entries.
func appendPlanHead(buf []byte, version byte, g command.ServerID, p *batchPlan) []byte {
	u := binary.AppendUvarint
	buf = u(append(buf, version), uint64(g))
	m := &p.meta
	buf = u(u(u(u(u(buf, m.Epoch), m.FirstSeq), m.LastSeq), m.CommitSeq), m.Applied)
	buf = u(buf, p.truncateLog)
	buf = u(buf, uint64(len(p.dropEpochs)))
	for _, e := range p.dropEpochs {
		buf = u(buf, e)
	}
	buf = u(buf, uint64(len(p.addEpochs)))
	for _, es := range p.addEpochs {
		buf = u(u(buf, es.Epoch), es.FirstSeq)
	}
	buf = u(buf, uint64(len(p.entries)))
	for _, e := range p.entries {
		buf = appendBytes(u(u(buf, e.Epoch), e.Seq), e.Data)
	}
	return buf
}

func appendOps(buf []byte, ops []storeOp) []byte {
	u := binary.AppendUvarint
	buf = u(buf, uint64(len(ops)))
	for _, op := range ops {
		switch {
		case op.vacuum != nil:
			buf = u(u(append(buf, opVacuum), op.vacuum.Tombstones), op.vacuum.Dedupe)
		case op.val == nil:
			buf = appendString(append(buf, opDeleteFlag|byte(op.bucket+1)), op.key)
		default:
			buf = appendBytes(appendString(append(buf, byte(op.bucket+1)), op.key), op.val)
		}
	}
	return buf
}

func appendPlanTail(buf []byte, p *batchPlan) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(buf, p.compactFrom), p.compactTo)
}

var errShortRecord = errors.New("record ends early")

// recReader decodes a record; the first error sticks and later reads return zero values.
type recReader struct {
	b   []byte
	err error
}

func (r *recReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) byte1() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errShortRecord
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns a copy: the record's buffer is reused after replay.
func (r *recReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errShortRecord
		return nil
	}
	v := make([]byte, n)
	copy(v, r.b[:n])
	r.b = r.b[n:]
	return v
}

// countIf is count when present, else 0 without reading.
func (r *recReader) countIf(present bool) int {
	if !present {
		return 0
	}
	return r.count()
}

// count reads a length that must be plausible for what follows (each item >= 1 byte).
func (r *recReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return 0
	}
	return int(n)
}

// decodePlan reads a record written by encodePlan.
func decodePlan(rec []byte) (command.ServerID, *batchPlan, error) {
	r := &recReader{b: rec}
	version := r.byte1()
	if r.err == nil && version != 1 && version != walRecordVersion {
		return 0, nil, fmt.Errorf("wal record version %d, want 1 or %d", version, walRecordVersion)
	}
	g := r.uvarint()
	if r.err == nil && (g == 0 || g > 65535) {
		return 0, nil, fmt.Errorf("wal record for group %d", g)
	}
	p := &batchPlan{}
	m := &p.meta
	m.Epoch, m.FirstSeq, m.LastSeq, m.CommitSeq, m.Applied = r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint()
	p.truncateLog = r.uvarint()
	for range r.count() {
		p.dropEpochs = append(p.dropEpochs, r.uvarint())
	}
	for range r.count() {
		p.addEpochs = append(p.addEpochs, sibling.EpochStart{Epoch: r.uvarint(), FirstSeq: r.uvarint()})
	}
	for range r.count() {
		e := sibling.Entry{Epoch: r.uvarint(), Seq: r.uvarint()}
		e.Data = r.bytes()
		p.entries = append(p.entries, e)
	}
	if version >= 2 {
		p.applyFrom = r.uvarint()
		p.opsFromLog = p.applyFrom > 0
		if r.err == nil && p.applyFrom > m.Applied {
			return 0, nil, fmt.Errorf("wal record applies from seq %d, beyond its applied seq %d", p.applyFrom, m.Applied)
		}
	}
	for n := r.countIf(!p.opsFromLog); n > 0; n-- {
		kind := r.byte1()
		switch {
		case r.err != nil:
		case kind == opVacuum:
			p.ops = append(p.ops, storeOp{vacuum: &command.Vacuum{Tombstones: r.uvarint(), Dedupe: r.uvarint()}})
		default:
			b := int(kind&^opDeleteFlag) - 1
			if b < 0 || b >= bucketCount {
				return 0, nil, fmt.Errorf("wal record op of kind %#x names no bucket", kind)
			}
			op := storeOp{bucket: b, key: string(r.bytes())}
			if kind&opDeleteFlag == 0 {
				op.val = r.bytes()
				if op.val == nil {
					op.val = []byte{}
				}
			}
			p.ops = append(p.ops, op)
		}
	}
	p.compactFrom, p.compactTo = r.uvarint(), r.uvarint()
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the record", len(r.b))
	}
	if r.err != nil {
		return 0, nil, fmt.Errorf("decode wal record: %w", r.err)
	}
	return command.ServerID(g), p, nil
}
