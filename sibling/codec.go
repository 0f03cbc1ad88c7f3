package sibling

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Replication frames are binary: a kind byte, then uvarints, then entry data as
// length-prefixed bytes. They are the hot path of every write, so no JSON.

const (
	frameAppend byte = 'A'
	frameAck    byte = 'K'
)

// Limits a decoder enforces so a hostile or corrupt frame cannot make it allocate wildly.
const (
	MaxFrameEntries   = 1 << 16
	MaxEntryDataBytes = 16 << 20
)

// MarshalAppend encodes m, appending to buf.
func MarshalAppend(buf []byte, m *Append) []byte {
	buf = append(buf, frameAppend)
	for _, v := range []uint64{uint64(m.Group), m.Epoch, uint64(m.Main), m.Config, m.PrevEpoch, m.PrevSeq, m.CommitSeq, m.Round, uint64(len(m.Entries))} {
		buf = binary.AppendUvarint(buf, v)
	}
	for _, e := range m.Entries {
		buf = binary.AppendUvarint(buf, e.Epoch)
		buf = binary.AppendUvarint(buf, e.Seq)
		buf = binary.AppendUvarint(buf, uint64(len(e.Data)))
		buf = append(buf, e.Data...)
	}
	return buf
}

// MarshalAck encodes a, appending to buf.
func MarshalAck(buf []byte, a *Ack) []byte {
	buf = append(buf, frameAck)
	ok := uint64(0)
	if a.OK {
		ok = 1
	}
	for _, v := range []uint64{uint64(a.Group), uint64(a.From), a.Epoch, a.Round, ok, a.Seq, a.LastEpoch, a.LastEpochStart} {
		buf = binary.AppendUvarint(buf, v)
	}
	return buf
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16(what string) uint16 {
	v := d.uvarint(what)
	if v > 0xffff && d.err == nil {
		d.err = fmt.Errorf("%s %d out of range", what, v)
	}
	return uint16(v)
}

// UnmarshalAppend decodes an Append frame. Entry data aliases b.
func UnmarshalAppend(b []byte) (*Append, error) {
	if len(b) == 0 || b[0] != frameAppend {
		return nil, errors.New("append frame: wrong kind")
	}
	d := &decoder{b: b[1:]}
	m := &Append{Group: d.u16("group"), Epoch: d.uvarint("epoch"), Main: d.u16("main"), Config: d.uvarint("config"),
		PrevEpoch: d.uvarint("prevEpoch"), PrevSeq: d.uvarint("prevSeq"), CommitSeq: d.uvarint("commitSeq"), Round: d.uvarint("round")}
	n := d.uvarint("entry count")
	if d.err == nil && n > MaxFrameEntries {
		return nil, fmt.Errorf("append frame: %d entries, more than %d", n, MaxFrameEntries)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		e := Entry{Epoch: d.uvarint("entry epoch"), Seq: d.uvarint("entry seq")}
		size := d.uvarint("entry size")
		if d.err == nil && (size > MaxEntryDataBytes || size > uint64(len(d.b))) {
			d.err = fmt.Errorf("entry %d: data size %d exceeds the frame", i, size)
		}
		if d.err == nil {
			e.Data, d.b = d.b[:size:size], d.b[size:]
			m.Entries = append(m.Entries, e)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("append frame: %w", d.err)
	}
	return m, nil
}

// UnmarshalAck decodes an Ack frame.
func UnmarshalAck(b []byte) (*Ack, error) {
	if len(b) == 0 || b[0] != frameAck {
		return nil, errors.New("ack frame: wrong kind")
	}
	d := &decoder{b: b[1:]}
	a := &Ack{Group: d.u16("group"), From: d.u16("from"), Epoch: d.uvarint("epoch"), Round: d.uvarint("round")}
	a.OK = d.uvarint("ok") == 1
	a.Seq, a.LastEpoch, a.LastEpochStart = d.uvarint("seq"), d.uvarint("lastEpoch"), d.uvarint("lastEpochStart")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("ack frame: %w", d.err)
	}
	return a, nil
}

// A batch carries several frames in one message, so that one socket write (and one read)
// moves every Append a link has ready, or every Ack of a durable write: 'B', then per
// frame a 4-byte big-endian length and the frame.
const frameBatch byte = 'B'

// MaxBatchFrames bounds the frames a batch may hold.
const MaxBatchFrames = 1 << 12

// NewBatch starts a batch in buf.
func NewBatch(buf []byte) []byte { return append(buf[:0], frameBatch) }

// BatchAppend adds an Append frame to a batch.
func BatchAppend(batch []byte, m *Append) []byte {
	at := len(batch)
	batch = MarshalAppend(append(batch, 0, 0, 0, 0), m)
	binary.BigEndian.PutUint32(batch[at:], uint32(len(batch)-at-4))
	return batch
}

// BatchAck adds an Ack frame to a batch.
func BatchAck(batch []byte, a *Ack) []byte {
	at := len(batch)
	batch = MarshalAck(append(batch, 0, 0, 0, 0), a)
	binary.BigEndian.PutUint32(batch[at:], uint32(len(batch)-at-4))
	return batch
}

// SplitFrames returns the frames of a message: those of a batch, or the message itself
// when it is a single frame. The frames alias b.
func SplitFrames(b []byte) ([][]byte, error) {
	if len(b) == 0 || b[0] != frameBatch {
		return [][]byte{b}, nil
	}
	var frames [][]byte
	rest := b[1:]
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, errors.New("batch: frame length cut short")
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("batch: frame of %d bytes exceeds the message", n)
		}
		if len(frames) == MaxBatchFrames {
			return nil, fmt.Errorf("batch: more than %d frames", MaxBatchFrames)
		}
		frames = append(frames, rest[4:4+n:4+n])
		rest = rest[4+n:]
	}
	if len(frames) == 0 {
		return nil, errors.New("batch: no frames")
	}
	return frames, nil
}
