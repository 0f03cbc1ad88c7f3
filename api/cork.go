package api

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// corkLimit is the most a corked connection holds before it writes anyway.
const corkLimit = 256 << 10

// corkBufs holds the buffers of corked connections between uses, so that an idle
// connection keeps none (as gorilla's write buffers, api.Server's WriteBufferPool).
var corkBufs = sync.Pool{New: func() any { return new([]byte) }}

// corkConn is a client connection's socket whose writer can hold its writes back and send
// them together: between cork and uncork, Write only appends to a buffer, which uncork
// writes in one call. gorilla/websocket writes each message to the socket as it ends, so
// this is what lets the replies and events that are ready leave in one socket write, each
// still its own frame. Writes from other goroutines (gorilla's pongs and close frames) take
// the same lock: while corked they join the buffer, in order.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    *[]byte // from corkBufs while corked
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if len(*c.buf)+len(p) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > corkLimit {
			return c.Conn.Write(p)
		}
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// Close sends what is held back when no write is under way (a close frame another
// goroutine wrote while the writer had the socket corked), then closes the socket. It
// never waits for a write: a writer stuck on a peer that stopped reading is what closing
// the socket ends.
func (c *corkConn) Close() error {
	if c.mu.TryLock() {
		if c.corked {
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// cork holds back later writes until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	if !c.corked {
		c.corked = true
		c.buf = corkBufs.Get().(*[]byte)
	}
	c.mu.Unlock()
}

// uncork writes what was held back, in one write, and lets later writes through. The
// error is the socket's: the held frames may be partly sent, and the connection is dead.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return nil
	}
	err := c.flushLocked()
	c.corked = false
	if cap(*c.buf) <= corkLimit {
		corkBufs.Put(c.buf)
	}
	c.buf = nil
	return err
}

func (c *corkConn) flushLocked() error {
	if len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// corkingWriter hands gorilla/websocket's Upgrade the hijacked socket wrapped in a
// corkConn, which it keeps in conn.
type corkingWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	return w.conn, brw, nil
}
