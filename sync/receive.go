package resync

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// Chunks that arrived together are written in one Sink.Write (one durable write for
	// several chunks, as a log's group commit), then acknowledged one by one.
	frames, stop := readAhead(ctx, c, opt.StallTimeout)
	defer stop()
	var n uint64
	var buf []byte
	var next *frameResult
	for {
		fr := next
		next = nil
		if fr == nil {
			fr = <-frames
		}
		if fr.err != nil {
			return h, st, fr.err
		}
		switch f := fr.f.(type) {
		case *chunk:
			var recs []Record
			raws := [][]byte{fr.raw}
			first := n + 1
			for {
				if f.id != h.ID || f.n != n+1 {
					return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want chunk %d of snapshot %x, got chunk %d of %x", n+1, h.ID, f.n, f.id)}
				}
				if err := checkOrder(after, f.recs); err != nil {
					return h, st, &AbortError{Code: AbortProtocol, Msg: err.Error()}
				}
				recs = append(recs, f.recs...)
				after = PositionOf(f.recs[len(f.recs)-1])
				n++
				more, ok := tryNext(frames)
				if !ok {
					break
				}
				if c, isChunk := more.f.(*chunk); isChunk && more.err == nil && len(recs) < MaxChunkRecords*4 {
					f = c
					raws = append(raws, more.raw)
					continue
				}
				next = more
				break
			}
			if err := sink.Write(recs); err != nil {
				return h, st, &AbortError{Code: AbortStore, Msg: fmt.Sprintf("write chunks %d..%d of snapshot %x: %v", first, n, h.ID, err)}
			}
			st.Chunks += n - first + 1
			st.Records += uint64(len(recs))
			if r, ok := c.(Releaser); ok {
				for _, b := range raws {
					r.Release(b)
				}
			}
			for k := first; k <= n; k++ {
				buf = marshalChunkAck(buf[:0], &chunkAck{id: h.ID, n: k})
				if err := c.WriteFrame(buf); err != nil {
					return h, st, err
				}
			}
		case *doneFrame:
			if f.id != h.ID {
				return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("end of snapshot %x during snapshot %x", f.id, h.ID)}
			}
			st.Bytes = f.bytes
			if err := sink.Finish(h); err != nil {
				return h, st, &AbortError{Code: AbortStore, Msg: fmt.Sprintf("install snapshot %x at seq %d: %v", h.ID, h.Seq, err)}
			}
			// Installed: the copy is whole whether or not the acknowledgement gets through
			// (the main then finds the copy's position by probing).
			_ = c.WriteFrame(marshalDoneAck(nil, &doneAck{id: h.ID}))
			return h, st, nil
		default:
			return h, st, &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("unexpected %T during snapshot %x", f, h.ID)}
		}
	}
}

// frameResult is one frame read ahead (raw is its buffer), or the error that ended reading.
type frameResult struct {
	f   any
	raw []byte
	err error
}

// Releaser is an optional part of a Conn: Release(b) says a frame ReadFrame returned is no
// longer referenced, so its buffer may be reused.
type Releaser interface {
	Release(b []byte)
}

// readAhead reads frames on its own goroutine until an error, so that chunks queue while
// the sink writes. stop ends it (the connection's close ends a read in progress).
func readAhead(ctx context.Context, c Conn, stall time.Duration) (<-chan *frameResult, func()) {
	out := make(chan *frameResult, 16)
	done := make(chan struct{})
	go func() {
		for {
			raw, f, err := readRaw(ctx, c, stall)
			select {
			case out <- &frameResult{f: f, raw: raw, err: err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(done) }) }
}

// tryNext returns a frame that is already there, without waiting.
func tryNext(frames <-chan *frameResult) (*frameResult, bool) {
	select {
	case fr := <-frames:
		return fr, true
	default:
		return nil, false
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
