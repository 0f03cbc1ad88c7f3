package command

import (
	"encoding/binary"
	"errors"
	"time"
)

// The binary form of effects and stored resources: what log entries, replication and the
// store carry inside the cluster. A client's JSON is parsed once, at the node that
// receives it; from there on a resource's data travels as the raw JSON bytes it was
// given, inside binary frames that need no scanning to encode or decode.
//
// Every value starts with a format byte: binaryFormat here, '{' for the JSON that older
// logs and stores hold, which DecodeEffect and DecodeStoredResource still read.
//
//	effect:   0x01 | uvarint kind | str rid | uvarint parts (1 resource, 2 dedupe, 4 ticket,
//	          8 vacuum) | [resource] | uvarint version | str type | time at | [dedupe] |
//	          uvarint config | [ticket: uvarint fence, u8 live, varint ttlMs] |
//	          [vacuum: uvarint tombstones, uvarint dedupe]
//	resource: str id | str type | uvarint version | bytes data | time created | time updated
//	dedupe:   str key | str hash | str op | uvarint epoch | uvarint seq | uvarint parts (1
//	          resource, 2 ticket) | [resource] | [ticket: uvarint fence, varint expiresMs] |
//	          time at
//	time:     u8 0 (the zero time) | u8 1, varint unix seconds, uvarint nanoseconds (UTC)
//	str, bytes: uvarint length, the bytes
const binaryFormat = 0x01

const (
	partResource = 1 << iota
	partDedupe
	partTicket
	partVacuum
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// AppendResource appends the binary form of r (without a format byte).
func AppendResource(b []byte, r *Resource) []byte {
	b = appendStr(b, r.ID)
	b = appendStr(b, r.Type)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendUvarint(b, uint64(len(r.Data)))
	b = append(b, r.Data...)
	b = appendTime(b, r.Created)
	return appendTime(b, r.Updated)
}

func appendEffect(b []byte, e *Effect) []byte {
	b = append(b, binaryFormat)
	b = binary.AppendUvarint(b, uint64(e.Kind))
	b = appendStr(b, e.RID)
	parts := uint64(0)
	if e.Resource != nil {
		parts |= partResource
	}
	if e.Dedupe != nil {
		parts |= partDedupe
	}
	if e.Ticket != nil {
		parts |= partTicket
	}
	if e.Vacuum != nil {
		parts |= partVacuum
	}
	b = binary.AppendUvarint(b, parts)
	if e.Resource != nil {
		b = AppendResource(b, e.Resource)
	}
	b = binary.AppendUvarint(b, e.Version)
	b = appendStr(b, e.Type)
	b = appendTime(b, e.At)
	if d := e.Dedupe; d != nil {
		b = appendStr(appendStr(appendStr(b, d.Key), d.Hash), d.Op)
		b = binary.AppendUvarint(binary.AppendUvarint(b, d.Epoch), d.Seq)
		dp := uint64(0)
		if d.Resource != nil {
			dp |= partResource
		}
		if d.Ticket != nil {
			dp |= partDedupe // the dedupe record's second part: its ticket
		}
		b = binary.AppendUvarint(b, dp)
		if d.Resource != nil {
			b = AppendResource(b, d.Resource)
		}
		if d.Ticket != nil {
			b = binary.AppendVarint(binary.AppendUvarint(b, d.Ticket.Fence), d.Ticket.ExpiresMs)
		}
		b = appendTime(b, d.At)
	}
	b = binary.AppendUvarint(b, e.Config)
	if t := e.Ticket; t != nil {
		live := byte(0)
		if t.Live {
			live = 1
		}
		b = binary.AppendVarint(append(binary.AppendUvarint(b, t.Fence), live), t.TTLMs)
	}
	if v := e.Vacuum; v != nil {
		b = binary.AppendUvarint(binary.AppendUvarint(b, v.Tombstones), v.Dedupe)
	}
	return b
}

var errTruncated = errors.New("value ends early")

// binReader reads a binary value; the first error sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) u8() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *binReader) raw() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail(errTruncated)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *binReader) str() string { return string(r.raw()) }

// strOr is str that returns same, without a copy, when the bytes read equal it: an effect
// names its rid and type twice (the effect's and its resource's).
func (r *binReader) strOr(same string) string {
	b := r.raw()
	if string(b) == same {
		return same
	}
	return string(b)
}

func (r *binReader) time() time.Time {
	switch r.u8() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		ns := r.uvarint()
		if ns >= 1e9 {
			r.fail(errors.New("nanoseconds out of range"))
			return time.Time{}
		}
		t := time.Unix(sec, int64(ns)).UTC()
		if t.IsZero() {
			// The zero time has its own tag; another encoding of it would not round-trip.
			r.fail(errors.New("zero time encoded as an instant"))
		}
		return t
	default:
		r.fail(errors.New("bad time tag"))
		return time.Time{}
	}
}

// resource reads a resource; rid is the id it most likely has (its effect's), shared
// rather than copied when it does.
func (r *binReader) resource(rid string) *Resource {
	res := &Resource{ID: r.strOr(rid), Type: r.str(), Version: r.uvarint()}
	if d := r.raw(); d != nil {
		res.Data = append([]byte(nil), d...)
	}
	res.Created, res.Updated = r.time(), r.time()
	return res
}

func (r *binReader) parts(known uint64) uint64 {
	p := r.uvarint()
	if p&^known != 0 {
		// A part this version does not know: applying the rest would diverge.
		r.fail(errors.New("unknown parts"))
	}
	return p
}

func decodeBinaryEffect(b []byte) (Effect, error) {
	r := &binReader{b: b[1:]}
	e := Effect{Kind: EffectKind(r.uvarint()), RID: r.str()}
	parts := r.parts(partResource | partDedupe | partTicket | partVacuum)
	if parts&partResource != 0 {
		e.Resource = r.resource(e.RID)
	}
	e.Version = r.uvarint()
	if e.Resource != nil {
		e.Type = r.strOr(e.Resource.Type)
	} else {
		e.Type = r.str()
	}
	e.At = r.time()
	if parts&partDedupe != 0 {
		d := &DedupeRecord{Key: r.str(), Hash: r.str(), Op: r.str(), Epoch: r.uvarint(), Seq: r.uvarint()}
		dp := r.parts(partResource | partDedupe)
		if dp&partResource != 0 {
			d.Resource = r.resource(e.RID)
		}
		if dp&partDedupe != 0 {
			d.Ticket = &TicketInfo{Fence: r.uvarint(), ExpiresMs: r.varint()}
		}
		d.At = r.time()
		e.Dedupe = d
	}
	e.Config = r.uvarint()
	if parts&partTicket != 0 {
		t := &TicketState{Fence: r.uvarint()}
		switch r.u8() {
		case 0:
		case 1:
			t.Live = true
		default:
			r.fail(errors.New("bad ticket liveness"))
		}
		t.TTLMs = r.varint()
		e.Ticket = t
	}
	if parts&partVacuum != 0 {
		e.Vacuum = &Vacuum{Tombstones: r.uvarint(), Dedupe: r.uvarint()}
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail(errors.New("data after the effect"))
	}
	return e, r.err
}

// EncodeStoredResource is r as the store keeps it.
func EncodeStoredResource(r *Resource) []byte {
	return AppendResource(append(make([]byte, 0, 64+len(r.ID)+len(r.Type)+len(r.Data)), binaryFormat), r)
}

// DecodeStoredResource reads a resource the store kept (binary, or JSON from older stores).
func DecodeStoredResource(b []byte) (*Resource, error) {
	if len(b) > 0 && b[0] == '{' {
		r := new(Resource)
		if err := jsonUnmarshal(b, r); err != nil {
			return nil, err
		}
		return r, nil
	}
	if len(b) == 0 || b[0] != binaryFormat {
		return nil, errors.New("stored resource: unknown format")
	}
	rd := &binReader{b: b[1:]}
	res := rd.resource("")
	if rd.err == nil && len(rd.b) > 0 {
		rd.fail(errors.New("data after the resource"))
	}
	if rd.err != nil {
		return nil, rd.err
	}
	return res, nil
}
