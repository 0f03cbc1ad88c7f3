package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

const (
	// writeWait bounds one frame write: a peer that stops reading for this long is dropped
	// rather than holding its replies (and the backend work behind them) forever.
	writeWait = 10 * time.Second
	// pingPeriod keeps idle connections alive through proxies and finds dead peers.
	pingPeriod = 30 * time.Second
	// eventBatch is how many event frames the writer takes from the session at a time
	// before it looks at replies again.
	eventBatch = 64
)

// wsConn is one WebSocket connection: a read loop that decodes frames and starts requests
// in arrival order, and a single writer (gorilla allows one concurrent writer) that sends
// answers as the backend delivers them (queued by the done function of each request, with
// no goroutine waiting per request when the session is an AsyncSession) and pulls event
// frames from the session when it is woken (Outbox).
type wsConn struct {
	s      *Server
	ws     *websocket.Conn
	sock   *corkConn // ws's socket: the writer corks it around what it sends together
	sess   Session
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	out      chan outFrame     // encoded replies for the writer
	wake     chan struct{}     // the session has event frames (capacity 1)
	events   []json.RawMessage // the writer's buffer for pulled event frames
	quit     chan struct{}     // closed to stop the writer once no reply can come
	done     chan struct{}     // closed when the writer has stopped
	pending  atomic.Int64      // requests started and not yet answered
	inflight sync.WaitGroup

	// Answers that arrived from the backend (AsyncSession's done), for the writer.
	amu      sync.Mutex
	answers  []answer
	answered chan struct{} // capacity 1

	ip     string // the client's address, for its rate limit without a token
	remote string // the client's address and port, for logs

	// who is the caller the connection authenticated as (nil: not yet). The read loop
	// sets it (upgrade, hello, a token found revoked); the token watcher reads it and
	// replaces it when the book changed.
	who atomic.Pointer[caller]
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		writeError(w, command.Errorf(command.CodeUnavailable, "server is shutting down"))
		return
	}
	ip := clientIP(r)
	if !s.ipConns.open(ip) {
		writeError(w, rateLimited(time.Second, "more than %d connections from %s", s.opts.MaxConnsPerIP, ip))
		return
	}
	defer s.ipConns.close(ip)
	cw := &corkingWriter{ResponseWriter: w}
	ws, err := s.upgrade.Upgrade(cw, r, nil) // on failure gorilla has answered already
	if err != nil {
		s.log.Debug().Err(err).Str("remote", r.RemoteAddr).Msg("websocket upgrade failed")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{
		s:        s,
		ws:       ws,
		sock:     cw.conn,
		ctx:      ctx,
		cancel:   cancel,
		out:      make(chan outFrame, s.opts.MaxPendingPerConn+64),
		ip:       ip,
		wake:     make(chan struct{}, 1),
		answered: make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.sess = s.b.NewSession(c)
	c.remote = r.RemoteAddr
	// A token on the upgrade authenticates; a missing or wrong one still gets a connection,
	// since the client may send a hello frame next.
	c.who.Store(s.resolve(bearer(r)))
	if !s.register(c) {
		c.shutdown(websocket.CloseGoingAway, "server shutting down")
	}
	s.metrics.connOpened()
	s.log.Debug().Str("remote", r.RemoteAddr).Bool("authed", c.who.Load() != nil).Msg("websocket open")
	c.run()
	s.metrics.connClosed()
	s.log.Debug().Str("remote", r.RemoteAddr).Msg("websocket closed")
}

// register adds c to the open connections unless the server is closing.
func (s *Server) register(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (c *wsConn) run() {
	go c.writeLoop()
	c.readLoop()
	// The peer is gone or broke the protocol: cancel the outstanding work, let its
	// waiters finish, then stop the writer and release the session.
	c.cancel()
	c.inflight.Wait()
	close(c.quit)
	<-c.done
	c.ws.Close()
	c.sess.Close()
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

// shutdown sends a close frame and closes the socket, which ends the read loop.
func (c *wsConn) shutdown(code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.ws.Close()
}

func (c *wsConn) readLoop() {
	for {
		kind, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		frame, tooLarge, err := readFrame(r, c.s.opts.MaxFrameBytes)
		if err != nil {
			return
		}
		start := time.Now()
		switch {
		case tooLarge:
			c.reply(nil, "invalid", nil, command.Errorf(command.CodeTooLarge,
				"frame exceeds %d bytes", c.s.opts.MaxFrameBytes), start)
		case kind != websocket.TextMessage:
			c.reply(nil, "invalid", nil, command.Errorf(command.CodeBadRequest,
				"binary frame refused: send one JSON object per text frame"), start)
		default:
			c.handle(frame, start)
		}
	}
}

// readFrame reads one frame's payload up to max bytes. A larger frame is read to its end
// and dropped (tooLarge), so the connection stays usable; gorilla's SetReadLimit would
// close it instead.
func readFrame(r io.Reader, max int) (frame []byte, tooLarge bool, err error) {
	frame, err = io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, false, err
	}
	if len(frame) <= max {
		return frame, false, nil
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

// handle decodes one text frame and answers it or starts it.
func (c *wsConn) handle(frame []byte, start time.Time) {
	id, req, ferr := decodeFrame(frame, c.s.opts.MaxDepth)
	if ferr != nil {
		c.reply(id, "invalid", nil, ferr, start)
		return
	}
	if req.Op == command.OpHello {
		c.hello(id, req, start)
		return
	}
	who := c.authenticated()
	if err := permit(who, req); err != nil {
		c.reply(id, req.Op, nil, err, start)
		return
	}
	if c.pending.Load() >= int64(c.s.opts.MaxPendingPerConn) {
		c.reply(id, req.Op, nil, rateLimited(10*time.Millisecond,
			"more than %d requests outstanding on this connection", c.s.opts.MaxPendingPerConn), start)
		return
	}
	if err := c.s.checkRate(who, c.ip); err != nil {
		c.reply(id, req.Op, nil, err, start)
		return
	}
	if req.Op == command.OpSubscribe || req.Op == command.OpRegisterSibling {
		// A subscription's events, and a registration's progress events, carry the id of
		// the request that opened them.
		req.Sub = *id
	}
	c.pending.Add(1)
	c.inflight.Add(1)
	// Start runs here, in arrival order, because it fixes the order of writes. The
	// outcome is queued for the writer, which encodes and sends it.
	op := req.Op
	c.s.startAsync(c.ctx, c.sess, req, who.admin, func(rep *command.Reply, err error) {
		if err == nil {
			rep, err = filterReply(req, rep)
		}
		c.amu.Lock()
		c.answers = append(c.answers, answer{id: id, op: op, rep: rep, err: err, start: start})
		c.amu.Unlock()
		c.pending.Add(-1)
		c.inflight.Done()
		select {
		case c.answered <- struct{}{}:
		default:
		}
	})
}

// answer is a request's outcome waiting for the writer.
type answer struct {
	id    *string
	op    string
	rep   *command.Reply
	err   error
	start time.Time
}

// writeAnswers sends every queued answer; it reports false when the connection failed.
func (c *wsConn) writeAnswers() bool {
	c.amu.Lock()
	as := c.answers
	c.answers = nil
	c.amu.Unlock()
	c.sock.cork()
	for i := range as {
		a := &as[i]
		if !c.writeFrame(c.encode(a.id, a.op, a.rep, a.err, a.start)) {
			return false
		}
	}
	return c.uncork()
}

// uncork sends what the writer held back; it reports false when the connection failed.
func (c *wsConn) uncork() bool {
	if err := c.sock.uncork(); err != nil {
		c.fail(err)
		return false
	}
	return true
}

// hello authenticates the connection with the frame's token. A refused token leaves the
// connection as it was.
func (c *wsConn) hello(id *string, req *command.Request, start time.Time) {
	who := c.s.resolve(req.Token)
	if who == nil {
		c.reply(id, req.Op, nil, command.Errorf(command.CodeUnauthorized, "hello token not accepted"), start)
		return
	}
	c.who.Store(who)
	c.reply(id, req.Op, nil, nil, start)
}

// authenticated is the connection's caller as of now: a directory token that was revoked,
// expired or lost its role since it authenticated gives nil (unauthorized).
func (c *wsConn) authenticated() *caller {
	who := c.who.Load()
	now := c.s.stillValid(who)
	if now != who {
		c.who.CompareAndSwap(who, now)
	}
	return now
}

// reply encodes the answer to one request, counts it, and hands it to the writer.
func (c *wsConn) reply(id *string, op string, rep *command.Reply, err error, start time.Time) {
	f := c.encode(id, op, rep, err, start)
	select {
	case c.out <- f:
	case <-c.done: // the writer is gone; so is the peer
	}
}

// encode encodes the answer to one request and counts it.
func (c *wsConn) encode(id *string, op string, rep *command.Reply, err error, start time.Time) outFrame {
	var w *wireReply
	code := "ok"
	if err != nil {
		e := wireError(err)
		w = &wireReply{Error: e}
		code = string(e.Code)
	} else {
		w = shapeReply(op, rep)
	}
	w.ID = rawID(id)
	data, merr := encodeReply(w)
	if merr != nil {
		// The backend handed back something unencodable (e.g. invalid raw JSON data).
		e := command.Errorf(command.CodeInternal, "encoding the reply to op %q failed: %v", op, merr)
		code = string(e.Code)
		data, _ = json.Marshal(&wireReply{ID: w.ID, Error: e})
	}
	c.s.metrics.observe(opLabel(op), code, time.Since(start))
	f := outFrame{data: data}
	if op == command.OpSubscribe && err == nil && id != nil {
		f.subscribed = *id
	}
	return f
}

// outFrame is a reply for the writer. subscribed names the subscription a subscribe reply
// opened: once the reply is written, its events may follow (Session.Subscribed).
type outFrame struct {
	data       []byte
	subscribed string
}

// Wake implements Outbox: it never blocks, one pending wake is enough.
func (c *wsConn) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeEvents sends the event frames the session has ready, one batch; when the batch was
// full it wakes itself again, so that replies queued meanwhile go out in between. It
// reports false when the connection failed.
func (c *wsConn) writeEvents() bool {
	if err := c.s.guard("events", func() error {
		c.events = c.sess.Events(c.events[:0], eventBatch)
		return nil
	}); err != nil {
		c.fail(err)
		return false
	}
	n := len(c.events)
	c.sock.cork()
	for _, f := range c.events {
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		if err := c.ws.WriteMessage(websocket.TextMessage, f); err != nil {
			c.fail(err)
			return false
		}
	}
	if !c.uncork() {
		return false
	}
	clear(c.events)
	c.s.metrics.eventsSent(n)
	if n == eventBatch {
		c.Wake()
	}
	return true
}

func (c *wsConn) writeLoop() {
	defer close(c.done)
	ping := time.NewTicker(pingPeriod)
	defer ping.Stop()
	for {
		select {
		case f := <-c.out:
			c.sock.cork()
			if !c.writeFrame(f) || !c.uncork() {
				return
			}
		case <-c.answered:
			if !c.writeAnswers() {
				return
			}
		case <-c.wake:
			if !c.writeEvents() {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				c.fail(err)
				return
			}
		case <-c.quit:
			return
		}
	}
}

// writeFrame sends one reply; it reports false when the connection failed.
func (c *wsConn) writeFrame(f outFrame) bool {
	c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := c.ws.WriteMessage(websocket.TextMessage, f.data); err != nil {
		c.fail(err)
		return false
	}
	if f.subscribed != "" {
		c.sess.Subscribed(f.subscribed)
	}
	return true
}

// fail ends a connection whose writes fail: closing the socket ends the read loop too.
func (c *wsConn) fail(err error) {
	c.s.log.Debug().Err(err).Msg("websocket write failed")
	c.ws.Close()
}
