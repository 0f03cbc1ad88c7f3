package resync

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sibylhq/sibyl/sibling"
)

// Frame kinds.
const (
	kindOffer    byte = 'O'
	kindResume   byte = 'R'
	kindChunk    byte = 'C'
	kindChunkAck byte = 'k'
	kindDone     byte = 'D'
	kindDoneAck  byte = 'd'
	kindAbort    byte = 'X'
)

// Limits a decoder enforces, so a hostile or corrupt frame cannot make it allocate wildly.
const (
	MaxChunkRecords = 1 << 16
	MaxRecordBytes  = 16 << 20
	maxHistory      = 1 << 16
	maxText         = 4096
)

// Record is one key and value of a snapshot, in the bucket the sink knows by number.
type Record struct {
	Bucket byte
	Key    []byte
	Value  []byte
}

// Position is where a record sits in the stream: its bucket byte followed by its key.
// Records are sent in ascending Position order; nil is before every record.
type Position []byte

// PositionOf returns r's position.
func PositionOf(r Record) Position {
	return append(Position{r.Bucket}, r.Key...)
}

// Header describes one snapshot of a group's committed state.
type Header struct {
	Group uint16
	// Epoch and Main are the sender's: a copy refuses a snapshot from a main of an epoch
	// below its own.
	Epoch uint64
	Main  uint16
	// ID names this snapshot; a resume is possible only into the same ID.
	ID uint64
	// Seq is the committed seq the state was read at, SeqEpoch the epoch of that entry.
	Seq      uint64
	SeqEpoch uint64
	// History is the epoch history up to Seq, so the copy can answer for entries below
	// its new horizon.
	History []sibling.EpochStart
	// Bytes estimates the transfer's size for progress (0: unknown).
	Bytes uint64
}

type offer struct{ h Header }
type resume struct {
	id    uint64
	after Position
}
type chunk struct {
	id   uint64
	n    uint64
	recs []Record
}
type chunkAck struct{ id, n uint64 }
type doneFrame struct{ id, records, bytes uint64 }
type doneAck struct{ id uint64 }

// AbortError is a transfer given up by one side. Code is one of the Abort* constants.
type AbortError struct {
	Code string
	Msg  string
	// Remote: the other side sent it.
	Remote bool
}

// Abort codes.
const (
	AbortRefused  = "refused"  // the copy does not accept a snapshot from this sender
	AbortStalled  = "stalled"  // the other side was silent for the stall timeout
	AbortProtocol = "protocol" // an unexpected or malformed frame
	AbortStore    = "store"    // reading or writing the snapshot failed
	AbortCanceled = "canceled" // the side's context ended
	AbortBroken   = "broken"   // the connection failed
)

func (e *AbortError) Error() string {
	who := "local"
	if e.Remote {
		who = "remote"
	}
	return fmt.Sprintf("snapshot transfer aborted (%s, %s): %s", who, e.Code, e.Msg)
}

// Unwrap makes errors.Is(err, ErrStalled) true for a stall.
func (e *AbortError) Unwrap() error {
	if e.Code == AbortStalled {
		return ErrStalled
	}
	return nil
}

// ErrStalled is wrapped by the AbortError of a side that waited StallTimeout for a frame.
var ErrStalled = errors.New("peer silent for the stall timeout")

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func marshalOffer(b []byte, h *Header) []byte {
	b = append(b, kindOffer)
	for _, v := range []uint64{uint64(h.Group), h.Epoch, uint64(h.Main), h.ID, h.Seq, h.SeqEpoch, h.Bytes, uint64(len(h.History))} {
		b = binary.AppendUvarint(b, v)
	}
	for _, es := range h.History {
		b = binary.AppendUvarint(b, es.Epoch)
		b = binary.AppendUvarint(b, es.FirstSeq)
	}
	return b
}

func marshalResume(b []byte, r *resume) []byte {
	b = binary.AppendUvarint(append(b, kindResume), r.id)
	return appendBytes(b, r.after)
}

func marshalChunk(b []byte, c *chunk) []byte {
	b = append(b, kindChunk)
	b = binary.AppendUvarint(b, c.id)
	b = binary.AppendUvarint(b, c.n)
	b = binary.AppendUvarint(b, uint64(len(c.recs)))
	for _, r := range c.recs {
		b = append(b, r.Bucket)
		b = appendBytes(b, r.Key)
		b = appendBytes(b, r.Value)
	}
	return b
}

func marshalChunkAck(b []byte, a *chunkAck) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(append(b, kindChunkAck), a.id), a.n)
}

func marshalDone(b []byte, d *doneFrame) []byte {
	b = append(b, kindDone)
	for _, v := range []uint64{d.id, d.records, d.bytes} {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func marshalDoneAck(b []byte, d *doneAck) []byte {
	return binary.AppendUvarint(append(b, kindDoneAck), d.id)
}

func marshalAbort(b []byte, e *AbortError) []byte {
	b = append(b, kindAbort)
	b = appendBytes(b, []byte(truncate(e.Code)))
	return appendBytes(b, []byte(truncate(e.Msg)))
}

func truncate(s string) string {
	if len(s) > maxText {
		return s[:maxText]
	}
	return s
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("decode %s: bad uvarint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string, limit int) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("decode %s: length %d exceeds the frame or the limit %d", what, n, limit)
		return nil
	}
	v := d.b[:n:n] // aliases the frame: each frame has its own buffer (Conn contract)
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("decode %s: frame ends early", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// decodeFrame returns one of *offer, *resume, *chunk, *chunkAck, *done, *doneAck or
// *AbortError (with Remote set).
func decodeFrame(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, errors.New("decode frame: empty")
	}
	d := &decoder{b: b[1:]}
	var out any
	switch b[0] {
	case kindOffer:
		var h Header
		h.Group = uint16(d.uvarint("group"))
		h.Epoch = d.uvarint("epoch")
		h.Main = uint16(d.uvarint("main"))
		h.ID = d.uvarint("id")
		h.Seq = d.uvarint("seq")
		h.SeqEpoch = d.uvarint("seq epoch")
		h.Bytes = d.uvarint("bytes")
		n := d.uvarint("history length")
		if n > maxHistory || n > uint64(len(d.b)) {
			d.fail("decode offer: %d history records", n)
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			h.History = append(h.History, sibling.EpochStart{Epoch: d.uvarint("history epoch"), FirstSeq: d.uvarint("history seq")})
		}
		out = &offer{h: h}
	case kindResume:
		r := &resume{id: d.uvarint("id")}
		r.after = d.bytes("position", MaxRecordBytes)
		out = r
	case kindChunk:
		c := &chunk{id: d.uvarint("id"), n: d.uvarint("chunk number")}
		n := d.uvarint("record count")
		if n > MaxChunkRecords || n > uint64(len(d.b)) {
			d.fail("decode chunk: %d records", n)
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			var r Record
			r.Bucket = d.byte1("bucket")
			r.Key = d.bytes("key", MaxRecordBytes)
			r.Value = d.bytes("value", MaxRecordBytes)
			c.recs = append(c.recs, r)
		}
		out = c
	case kindChunkAck:
		out = &chunkAck{id: d.uvarint("id"), n: d.uvarint("chunk number")}
	case kindDone:
		out = &doneFrame{id: d.uvarint("id"), records: d.uvarint("records"), bytes: d.uvarint("bytes")}
	case kindDoneAck:
		out = &doneAck{id: d.uvarint("id")}
	case kindAbort:
		e := &AbortError{Remote: true}
		e.Code = string(d.bytes("code", maxText))
		e.Msg = string(d.bytes("message", maxText))
		out = e
	default:
		return nil, fmt.Errorf("decode frame: unknown kind %q", b[0])
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode frame %q: %d trailing bytes", b[0], len(d.b))
	}
	return out, nil
}
