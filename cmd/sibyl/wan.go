package main

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// --wan-delay (docs/protocol.md §6): every connection a process opens to a process of
// another location carries a real one-way delay in each direction, so that a round trip
// between locations costs twice the delay, as a WAN link would. The dialling side adds
// both directions (its writes leave the delay later, the peer's bytes are handed to the
// reader the delay after they arrived), so the accepting side needs nothing. The peer's
// location comes from what the process learnt (its directories, the ads); a peer of an
// unknown location is dialled without delay.

// dialFunc opens a connection, as net.Dialer.DialContext does.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// wanDialer dials through base (nil: TCP) and wraps every connection to a peer whose
// location (locate) is known and differs from self in a wanConn of delay.
func wanDialer(self string, delay time.Duration, locate func(addr string) string, base dialFunc) dialFunc {
	if base == nil {
		var d net.Dialer
		base = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := base(ctx, network, addr)
		if err != nil || delay <= 0 {
			return conn, err
		}
		if loc := locate(addr); loc == "" || loc == self {
			return conn, nil
		}
		return newWANConn(conn, delay), nil
	}
}

const (
	// wanChunk is the most one read from the underlying connection takes.
	wanChunk = 32 << 10
	// wanQueue bounds the chunks in flight each way: a writer (or the peer) that runs
	// further ahead waits, as on a full TCP window.
	wanQueue = 256
)

// chunk is bytes in flight and when they are due at the other end.
type chunk struct {
	data []byte
	due  time.Time
	err  error // the read that ended the stream (inbound only)
}

// wanConn is a net.Conn whose bytes take delay longer each way. Writes are queued and sent
// by one goroutine when due, reads are taken by another as they arrive and handed out when
// due; order and content are unchanged. Close stops reading at once and closes the
// underlying connection once what was written has been sent.
type wanConn struct {
	net.Conn
	delay time.Duration

	out     chan chunk
	in      chan chunk
	closed  chan struct{}
	once    sync.Once
	sent    chan struct{} // closed when the writer goroutine has finished
	wmu     sync.Mutex    // one Write at a time, so concurrent writes keep their bytes whole
	werrMu  sync.Mutex
	werr    error
	rmu     sync.Mutex // one Read at a time: head and pending are the reader's
	head    *chunk
	pending []byte
	rerr    error

	dlMu      sync.Mutex
	rdl, wdl  time.Time
	dlChanged chan struct{} // closed and replaced whenever a deadline changes
}

func newWANConn(conn net.Conn, delay time.Duration) *wanConn {
	c := &wanConn{Conn: conn, delay: delay, out: make(chan chunk, wanQueue), in: make(chan chunk, wanQueue),
		closed: make(chan struct{}), sent: make(chan struct{}), dlChanged: make(chan struct{})}
	go c.sendLoop()
	go c.receiveLoop()
	return c
}

// sendLoop writes each queued chunk when it is due; after Close it sends what was queued,
// then closes the underlying connection.
func (c *wanConn) sendLoop() {
	defer close(c.sent)
	defer c.Conn.Close()
	for {
		var ch chunk
		select {
		case ch = <-c.out:
		case <-c.closed:
			select {
			case ch = <-c.out:
			default:
				return
			}
		}
		if d := time.Until(ch.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := c.Conn.Write(ch.data); err != nil {
			c.werrMu.Lock()
			c.werr = err
			c.werrMu.Unlock()
			return
		}
	}
}

// receiveLoop stamps what arrives with when it is due to the reader.
func (c *wanConn) receiveLoop() {
	for {
		buf := make([]byte, wanChunk)
		n, err := c.Conn.Read(buf)
		ch := chunk{data: buf[:n], due: time.Now().Add(c.delay), err: err}
		select {
		case c.in <- ch:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

// deadline returns the read or write deadline and the channel that announces its change.
func (c *wanConn) deadline(read bool) (time.Time, <-chan struct{}) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if read {
		return c.rdl, c.dlChanged
	}
	return c.wdl, c.dlChanged
}

func (c *wanConn) setDeadline(read, write bool, t time.Time) {
	c.dlMu.Lock()
	if read {
		c.rdl = t
	}
	if write {
		c.wdl = t
	}
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	c.dlMu.Unlock()
}

// SetDeadline, SetReadDeadline and SetWriteDeadline apply to the delayed streams (the
// underlying connection has none: its goroutines block on it).
func (c *wanConn) SetDeadline(t time.Time) error      { c.setDeadline(true, true, t); return nil }
func (c *wanConn) SetReadDeadline(t time.Time) error  { c.setDeadline(true, false, t); return nil }
func (c *wanConn) SetWriteDeadline(t time.Time) error { c.setDeadline(false, true, t); return nil }

// wait blocks until until (zero: forever), the deadline passes, or the connection closes.
// It returns nil when until came, os.ErrDeadlineExceeded or net.ErrClosed otherwise;
// ready, when set, ends the wait early with nil.
func (c *wanConn) wait(read bool, until time.Time, ready <-chan chunk, got *chunk) error {
	for {
		select {
		case <-c.closed:
			return net.ErrClosed
		default:
		}
		dl, changed := c.deadline(read)
		if !dl.IsZero() && !time.Now().Before(dl) {
			return os.ErrDeadlineExceeded
		}
		end := until
		if !dl.IsZero() && (end.IsZero() || dl.Before(end)) {
			end = dl
		}
		var timer *time.Timer
		var fired <-chan time.Time
		if !end.IsZero() {
			timer = time.NewTimer(time.Until(end))
			fired = timer.C
		}
		var err error
		done := true
		select {
		case ch := <-ready:
			*got = ch
		case <-fired:
			done = !until.IsZero() && !time.Now().Before(until)
		case <-changed:
			done = false
		case <-c.closed:
			err = net.ErrClosed
		}
		if timer != nil {
			timer.Stop()
		}
		if done {
			return err
		}
	}
}

// Read hands out bytes that arrived at least delay ago.
func (c *wanConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.head == nil {
			var ch chunk
			if err := c.wait(true, time.Time{}, c.in, &ch); err != nil {
				return 0, err
			}
			c.head = &ch
		}
		if err := c.wait(true, c.head.due, nil, nil); err != nil {
			return 0, err
		}
		c.pending, c.rerr, c.head = c.head.data, c.head.err, nil
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write queues p to leave delay from now; it blocks only while the queue is full.
func (c *wanConn) Write(p []byte) (int, error) {
	c.werrMu.Lock()
	err := c.werr
	c.werrMu.Unlock()
	if err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ch := chunk{data: append([]byte(nil), p...), due: time.Now().Add(c.delay)}
	for {
		dl, changed := c.deadline(false)
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		var timer *time.Timer
		var fired <-chan time.Time
		if !dl.IsZero() {
			timer = time.NewTimer(time.Until(dl))
			fired = timer.C
		}
		var n int
		var err error
		done := true
		select {
		case c.out <- ch:
			n = len(p)
		case <-fired:
			done = false
		case <-changed:
			done = false
		case <-c.closed:
			err = net.ErrClosed
		}
		if timer != nil {
			timer.Stop()
		}
		if done {
			return n, err
		}
	}
}

// Close ends reading at once; what was written still leaves when due, then the
// underlying connection closes.
func (c *wanConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		close(c.closed)
		err = nil
	})
	return err
}

// lateLocator answers a peer's location through a function set once the process that
// knows it exists (its dialer is made before it); until then every location is unknown.
type lateLocator struct {
	f atomic.Pointer[func(string) string]
}

func (l *lateLocator) locate(addr string) string {
	if f := l.f.Load(); f != nil {
		return (*f)(addr)
	}
	return ""
}

func (l *lateLocator) set(f func(string) string) { l.f.Store(&f) }

// wanDialFor is the Dial a process of location self gets for --wan-delay delay: nil (plain
// TCP) without a delay.
func wanDialFor(self string, delay time.Duration, l *lateLocator) dialFunc {
	if delay <= 0 {
		return nil
	}
	return wanDialer(self, delay, l.locate, nil)
}

const wanDelayUsage = "one-way delay added to every connection this process opens to a process of another location (0: none; sibyl dev sets it)"

// locationOrDefault is the location a process of --location loc belongs to (the packages'
// default when unset).
func locationOrDefault(loc string) string {
	if loc == "" {
		return "default"
	}
	return loc
}
