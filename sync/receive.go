package resync

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sink is the copy being rebuilt. Every method's effect is durable when it returns.
type Sink interface {
	// Begin prepares for snapshot h. If the copy holds part of the same snapshot (h.ID),
	// it returns the position of the last record it holds, and the transfer continues
	// after it. Otherwise it records that a resync is under way, wipes the copy's state,
	// and returns nil: a copy that crashes from here on knows it holds nothing usable.
	Begin(h Header) (Position, error)
	// Write stores records (in ascending position order) and their last position.
	Write(recs []Record) error
	// Finish makes the copy whole at h.Seq and clears the resync mark.
	Finish(h Header) error
}

// ReceiveOptions bound the copy's side of a transfer.
type ReceiveOptions struct {
	StallTimeout time.Duration // longest wait for the next frame [10 s]
	Clock        Clock         // [WallClock]
	// Accept, when set, vets the offer before anything is wiped (epoch, main, group); an
	// error refuses the snapshot with AbortRefused.
	Accept func(Header) error
}

// Receive answers one offer on c and installs the snapshot into sink. It returns the
// installed header, or an *AbortError (sent to the main too, best effort).
func Receive(ctx context.Context, c Conn, sink Sink, opt ReceiveOptions) (Header, Stats, error) {
	if opt.StallTimeout <= 0 {
		opt.StallTimeout = 10 * time.Second
	}
	if opt.Clock == nil {
		opt.Clock = WallClock
	}
	start := opt.Clock.Now()
	h, st, err := receive(ctx, c, sink, opt)
	st.Elapsed = opt.Clock.Now().Sub(start)
	if err != nil {
		var ae *AbortError
		if !errors.As(err, &ae) {
			ae = &AbortError{Code: AbortBroken, Msg: err.Error()}
			err = ae
		}
		if !ae.Remote {
			_ = c.WriteFrame(marshalAbort(nil, ae))
		}
	}
	return h, st, err
}

func receive(ctx context.Context, c Conn, sink Sink, opt ReceiveOptions) (Header, Stats, error) {
	var st Stats
	f, err := readFrame(ctx, c, opt.StallTimeout)
	if err != nil {
		return Header{}, st, err
	}
	o, ok := f.(*offer)
	if !ok {
		return Header{}, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want an offer, got %T", f)}
	}
	h := o.h
	if opt.Accept != nil {
		if err := opt.Accept(h); err != nil {
			return h, st, &AbortError{Code: AbortRefused, Msg: err.Error()}
		}
	}
	after, err := sink.Begin(h)
	if err != nil {
		return h, st, &AbortError{Code: AbortStore, Msg: fmt.Sprintf("begin snapshot %x: %v", h.ID, err)}
	}
	st.Resumed = len(after) > 0
	if err := c.WriteFrame(marshalResume(nil, &resume{id: h.ID, after: after})); err != nil {
		return h, st, err
	}
	var n uint64
	var buf []byte
	for {
		f, err := readFrame(ctx, c, opt.StallTimeout)
		if err != nil {
			return h, st, err
		}
		switch f := f.(type) {
		case *chunk:
			if f.id != h.ID || f.n != n+1 {
				return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want chunk %d of snapshot %x, got chunk %d of %x", n+1, h.ID, f.n, f.id)}
			}
			if err := checkOrder(after, f.recs); err != nil {
				return h, st, &AbortError{Code: AbortProtocol, Msg: err.Error()}
			}
			if err := sink.Write(f.recs); err != nil {
				return h, st, &AbortError{Code: AbortStore, Msg: fmt.Sprintf("write chunk %d of snapshot %x: %v", f.n, h.ID, err)}
			}
			after = PositionOf(f.recs[len(f.recs)-1])
			n++
			st.Chunks++
			st.Records += uint64(len(f.recs))
			buf = marshalChunkAck(buf[:0], &chunkAck{id: h.ID, n: n})
			if err := c.WriteFrame(buf); err != nil {
				return h, st, err
			}
		case *doneFrame:
			if f.id != h.ID {
				return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("end of snapshot %x during snapshot %x", f.id, h.ID)}
			}
			st.Bytes = f.bytes
			if err := sink.Finish(h); err != nil {
				return h, st, &AbortError{Code: AbortStore, Msg: fmt.Sprintf("install snapshot %x at seq %d: %v", h.ID, h.Seq, err)}
			}
			return h, st, c.WriteFrame(marshalDoneAck(nil, &doneAck{id: h.ID}))
		default:
			return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("unexpected %T during snapshot %x", f, h.ID)}
		}
	}
}

// checkOrder refuses a chunk that is empty or not strictly after `after` in position order:
// a sink may rely on positions only growing.
func checkOrder(after Position, recs []Record) error {
	if len(recs) == 0 {
		return errors.New("empty chunk")
	}
	prev := after
	for i, r := range recs {
		p := PositionOf(r)
		if prev != nil && string(p) <= string(prev) {
			return fmt.Errorf("record %d at position %q does not follow %q", i, p, prev)
		}
		prev = p
	}
	return nil
}
