package resync

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// Conn is an ordered, reliable, framed connection (a WebSocket in node/, Pipe in tests).
// WriteFrame may be called from one goroutine and ReadFrame from another. WriteFrame must
// not keep b after it returns; every frame ReadFrame returns must be a buffer of its own,
// since decoded records alias it.
type Conn interface {
	WriteFrame(b []byte) error
	// ReadFrame returns the next frame, or an error wrapping os.ErrDeadlineExceeded when
	// none arrived within timeout.
	ReadFrame(timeout time.Duration) ([]byte, error)
}

// Clock is the time the transfer is paced and measured by.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends.
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WallClock is the real clock.
var WallClock Clock = wallClock{}

// ErrClosed is returned by a Pipe end after either end was closed.
var ErrClosed = errors.New("pipe closed")

// PipeEnd is one end of an in-memory Conn made by Pipe.
type PipeEnd struct {
	in, out chan []byte
	closed  chan struct{}
	once    *sync.Once
}

// Pipe returns two connected in-memory Conns, each buffering up to buf frames.
func Pipe(buf int) (*PipeEnd, *PipeEnd) {
	ab, ba := make(chan []byte, buf), make(chan []byte, buf)
	closed, once := make(chan struct{}), new(sync.Once)
	return &PipeEnd{in: ba, out: ab, closed: closed, once: once},
		&PipeEnd{in: ab, out: ba, closed: closed, once: once}
}

// Close breaks the pipe for both ends.
func (p *PipeEnd) Close() { p.once.Do(func() { close(p.closed) }) }

// WriteFrame copies b into the pipe; it blocks while the buffer is full.
func (p *PipeEnd) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return ErrClosed
	default:
	}
	select {
	case p.out <- append([]byte(nil), b...):
		return nil
	case <-p.closed:
		return ErrClosed
	}
}

// ReadFrame returns the next frame written at the other end.
func (p *PipeEnd) ReadFrame(timeout time.Duration) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-p.in:
		return b, nil
	case <-p.closed:
		return nil, ErrClosed
	case <-t.C:
		return nil, os.ErrDeadlineExceeded
	}
}
