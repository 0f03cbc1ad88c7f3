package resync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Source is one snapshot of a group's committed state, open for reading (a bbolt read
// transaction in node/). It is read from one goroutine at a time.
type Source interface {
	Header() Header
	// Read returns the records after position after, in ascending position order,
	// stopping after maxRecords or once maxBytes of keys and values are reached (always at
	// least one record when any is left). It returns io.EOF when none is left.
	Read(after Position, maxBytes, maxRecords int) ([]Record, error)
}

// Progress is a transfer's position, reported after each acknowledged chunk.
type Progress struct {
	Records uint64 // acknowledged in this connection's transfer
	Bytes   uint64 // their keys and values, comparable with Total
	Total   uint64 // the header's estimate (0: unknown)
	Resumed bool   // the copy continued a transfer begun on an earlier connection
}

// SendOptions bound a transfer. Zero values take the defaults in brackets.
type SendOptions struct {
	ChunkBytes   int           // data per chunk [1 MiB]
	ChunkRecords int           // records per chunk [4096]
	Window       int           // unacknowledged chunks [8]
	Rate         int64         // bytes per second, 0 unlimited
	StallTimeout time.Duration // longest wait for an answer [10 s]
	Clock        Clock         // [WallClock]
	// Progress, when set, is called after every acknowledged chunk.
	Progress func(Progress)
}

func (o *SendOptions) defaults() {
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 1 << 20
	}
	if o.ChunkRecords <= 0 || o.ChunkRecords > MaxChunkRecords {
		o.ChunkRecords = 4096
	}
	if o.Window <= 0 {
		o.Window = 8
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = WallClock
	}
}

// Stats is what one call moved.
type Stats struct {
	Records, Bytes, Chunks uint64
	Resumed                bool
	Elapsed                time.Duration
}

// Send offers src over c and streams it until the copy has installed it. On failure it
// tells the copy why (best effort) and returns an *AbortError; calling Send again with the
// same src on a new connection resumes where the copy's durable position is.
func Send(ctx context.Context, c Conn, src Source, opt SendOptions) (Stats, error) {
	opt.defaults()
	s := &sender{c: c, src: src, opt: opt, hdr: src.Header(), start: opt.Clock.Now(),
		lim: newLimiter(opt.Rate, opt.Clock)}
	err := s.run(ctx)
	s.stats.Elapsed = opt.Clock.Now().Sub(s.start)
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
	return s.stats, err
}

type sender struct {
	c     Conn
	src   Source
	opt   SendOptions
	hdr   Header
	lim   *limiter
	start time.Time
	stats Stats
	buf   []byte
}

func (s *sender) run(ctx context.Context) error {
	s.buf = marshalOffer(s.buf[:0], &s.hdr)
	if err := s.c.WriteFrame(s.buf); err != nil {
		return fmt.Errorf("send offer of snapshot %x: %w", s.hdr.ID, err)
	}
	f, err := s.read(ctx)
	if err != nil {
		return err
	}
	r, ok := f.(*resume)
	if !ok || r.id != s.hdr.ID {
		return &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want resume of snapshot %x, got %T", s.hdr.ID, f)}
	}
	s.stats.Resumed = len(r.after) > 0
	pos := r.after

	var sent, acked uint64
	var inflight []Progress // records and bytes of each unacknowledged chunk
	var done Progress
	eof := false
	for !eof || acked < sent {
		for !eof && sent-acked < uint64(s.opt.Window) {
			if err := ctx.Err(); err != nil {
				return &AbortError{Code: AbortCanceled, Msg: err.Error()}
			}
			recs, err := s.src.Read(pos, s.opt.ChunkBytes, s.opt.ChunkRecords)
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return &AbortError{Code: AbortStore, Msg: fmt.Sprintf("read snapshot %x after %q: %v", s.hdr.ID, pos, err)}
			}
			pos = PositionOf(recs[len(recs)-1])
			sent++
			s.buf = marshalChunk(s.buf[:0], &chunk{id: s.hdr.ID, n: sent, recs: recs})
			if err := s.lim.wait(ctx, len(s.buf)); err != nil {
				return &AbortError{Code: AbortCanceled, Msg: err.Error()}
			}
			if err := s.c.WriteFrame(s.buf); err != nil {
				return fmt.Errorf("send chunk %d of snapshot %x: %w", sent, s.hdr.ID, err)
			}
			data := 0
			for _, r := range recs {
				data += len(r.Key) + len(r.Value)
			}
			inflight = append(inflight, Progress{Records: uint64(len(recs)), Bytes: uint64(data)})
			s.stats.Records += uint64(len(recs))
			s.stats.Bytes += uint64(len(s.buf))
			s.stats.Chunks++
		}
		if acked == sent {
			continue
		}
		f, err := s.read(ctx)
		if err != nil {
			return err
		}
		a, ok := f.(*chunkAck)
		if !ok || a.id != s.hdr.ID || a.n != acked+1 {
			return &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want ack of chunk %d of snapshot %x, got %T %+v", acked+1, s.hdr.ID, f, f)}
		}
		acked++
		done.Records += inflight[0].Records
		done.Bytes += inflight[0].Bytes
		inflight = inflight[1:]
		if s.opt.Progress != nil {
			s.opt.Progress(Progress{Records: done.Records, Bytes: done.Bytes, Total: s.hdr.Bytes, Resumed: s.stats.Resumed})
		}
	}
	s.buf = marshalDone(s.buf[:0], &doneFrame{id: s.hdr.ID, records: s.stats.Records, bytes: s.stats.Bytes})
	if err := s.c.WriteFrame(s.buf); err != nil {
		return fmt.Errorf("send end of snapshot %x: %w", s.hdr.ID, err)
	}
	f, err = s.read(ctx)
	if err != nil {
		return err
	}
	if d, ok := f.(*doneAck); !ok || d.id != s.hdr.ID {
		return &AbortError{Code: AbortProtocol, Msg: fmt.Sprintf("want the install ack of snapshot %x, got %T", s.hdr.ID, f)}
	}
	return nil
}

// read waits for the next frame, at most StallTimeout; an Abort frame is returned as error.
func (s *sender) read(ctx context.Context) (any, error) {
	return readFrame(ctx, s.c, s.opt.StallTimeout)
}

func readFrame(ctx context.Context, c Conn, stall time.Duration) (any, error) {
	_, f, err := readRaw(ctx, c, stall)
	return f, err
}

// readRaw reads and decodes one frame, returning its buffer too.
func readRaw(ctx context.Context, c Conn, stall time.Duration) ([]byte, any, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, &AbortError{Code: AbortCanceled, Msg: err.Error()}
	}
	b, err := c.ReadFrame(stall)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, nil, &AbortError{Code: AbortStalled, Msg: fmt.Sprintf("%v (%s)", ErrStalled, stall)}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read frame: %w", err)
	}
	f, err := decodeFrame(b)
	if err != nil {
		return nil, nil, &AbortError{Code: AbortProtocol, Msg: err.Error()}
	}
	if ae, ok := f.(*AbortError); ok {
		return nil, nil, ae
	}
	return b, f, nil
}
