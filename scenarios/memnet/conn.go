package memnet

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// conn is one connection: two ends, and a pipe per direction (pipes[i] carries what end i
// writes to end 1-i).
type conn struct {
	n     *Network
	ends  [2]end
	pipes [2]pipe
	reset bool // severed: reads and writes fail with ECONNRESET rather than EOF
}

type end struct {
	host, addr string
	closed     bool
	rdl, wdl   time.Time // read and write deadlines (zero: none)
}

type pipe struct {
	chunks  []chunk
	size    int
	eof     bool   // the writing end closed: EOF after the chunks
	changed signal // bytes or EOF written, bytes read, an end closed, a deadline set
}

type chunk struct {
	at time.Time // when it reaches the reader
	b  []byte
}

// closeLocked closes end i: what it had sent still arrives, then EOF; what it had not read
// is dropped. The connection leaves the network when both ends are closed.
func (c *conn) closeLocked(i int) {
	if c.ends[i].closed {
		return
	}
	c.ends[i].closed = true
	c.pipes[i].eof = true
	c.pipes[1-i].chunks, c.pipes[1-i].size = nil, 0
	c.pipes[0].changed.fire()
	c.pipes[1].changed.fire()
	if c.ends[0].closed && c.ends[1].closed {
		delete(c.n.conns, c)
	}
}

// endpoint is end side of c, as the process at that end holds it.
type endpoint struct {
	c    *conn
	side int
}

func (e *endpoint) me() *end   { return &e.c.ends[e.side] }
func (e *endpoint) peer() *end { return &e.c.ends[1-e.side] }

func (e *endpoint) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: memAddr(e.me().addr), Addr: memAddr(e.peer().addr), Err: err}
}

func (e *endpoint) Read(b []byte) (int, error) {
	n := e.c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		me, in := e.me(), &e.c.pipes[1-e.side]
		if e.c.reset {
			return 0, e.opError("read", syscall.ECONNRESET)
		}
		if me.closed {
			return 0, e.opError("read", net.ErrClosed)
		}
		now := time.Now()
		if !me.rdl.IsZero() && !now.Before(me.rdl) {
			return 0, e.opError("read", os.ErrDeadlineExceeded)
		}
		var until time.Time
		if !n.cutLocked(e.peer().host, me.host) {
			if len(in.chunks) > 0 {
				head := &in.chunks[0]
				if !now.Before(head.at) {
					k := copy(b, head.b)
					head.b = head.b[k:]
					in.size -= k
					if len(head.b) == 0 {
						in.chunks = in.chunks[1:]
					}
					in.changed.fire() // room for the writer
					return k, nil
				}
				until = head.at
			} else if in.eof {
				return 0, io.EOF
			}
		}
		if !me.rdl.IsZero() && (until.IsZero() || me.rdl.Before(until)) {
			until = me.rdl
		}
		_ = n.wait(nil, until, &in.changed)
	}
}

func (e *endpoint) Write(b []byte) (int, error) {
	n := e.c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		me, out := e.me(), &e.c.pipes[e.side]
		if e.c.reset {
			return 0, e.opError("write", syscall.ECONNRESET)
		}
		if me.closed {
			return 0, e.opError("write", net.ErrClosed)
		}
		if e.peer().closed && !n.cutLocked(e.peer().host, me.host) {
			return 0, e.opError("write", syscall.ECONNRESET)
		}
		now := time.Now()
		if !me.wdl.IsZero() && !now.Before(me.wdl) {
			return 0, e.opError("write", os.ErrDeadlineExceeded)
		}
		if out.size == 0 || out.size+len(b) <= pipeCap {
			at := now.Add(n.latencyLocked(me.host, e.peer().host))
			if k := len(out.chunks); k > 0 && at.Before(out.chunks[k-1].at) {
				at = out.chunks[k-1].at // bytes arrive in order
			}
			out.chunks = append(out.chunks, chunk{at: at, b: append([]byte(nil), b...)})
			out.size += len(b)
			out.changed.fire()
			return len(b), nil
		}
		_ = n.wait(nil, me.wdl, &out.changed)
	}
}

func (e *endpoint) Close() error {
	n := e.c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	e.c.closeLocked(e.side)
	return nil
}

func (e *endpoint) LocalAddr() net.Addr  { return memAddr(e.me().addr) }
func (e *endpoint) RemoteAddr() net.Addr { return memAddr(e.peer().addr) }

func (e *endpoint) SetDeadline(t time.Time) error {
	return e.setDeadlines(func(me *end) { me.rdl, me.wdl = t, t })
}

func (e *endpoint) SetReadDeadline(t time.Time) error {
	return e.setDeadlines(func(me *end) { me.rdl = t })
}

func (e *endpoint) SetWriteDeadline(t time.Time) error {
	return e.setDeadlines(func(me *end) { me.wdl = t })
}

func (e *endpoint) setDeadlines(set func(*end)) error {
	n := e.c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	set(e.me())
	e.c.pipes[0].changed.fire()
	e.c.pipes[1].changed.fire()
	return nil
}
