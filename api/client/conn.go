package client

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

// conn is one WebSocket connection with its pipelined requests: writers take wmu (gorilla
// allows one concurrent writer), one reader goroutine hands each reply to the request
// waiting under its id. Once the connection drops, every waiting request fails.
type conn struct {
	ws   *websocket.Conn
	addr string

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	pending map[string]chan *wireReply
	subs    map[string]func(frame []byte) // event handlers by subscription (request) id
	nextID  uint64
	err     error         // why the connection ended; set once
	dead    chan struct{} // closed when the connection ended
}

// outFrame is a request frame: the id beside the request's fields.
type outFrame struct {
	ID string `json:"id"`
	*command.Request
}

// wireReply is a reply frame; events (with "sub", without "id") are told apart by Event.
type wireReply struct {
	ID    json.RawMessage `json:"id"`
	OK    bool            `json:"ok"`
	Error *command.Error  `json:"error"`
	Event string          `json:"event"`
	Sub   string          `json:"sub"`
	command.Reply
}

func newConn(ws *websocket.Conn, addr string) *conn {
	c := &conn{ws: ws, addr: addr, pending: map[string]chan *wireReply{}, subs: map[string]func([]byte){},
		dead: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *conn) alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// fail ends the connection once, recording why.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.dead)
	c.mu.Unlock()
	c.ws.Close()
}

// close ends the connection politely.
func (c *conn) close() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.fail(ErrClosed)
}

// closeIfIdle closes the connection when no request waits on it and no subscription uses
// it, and reports whether it is closed. A request that starts afterwards is not sent
// (send reports sent false), so nothing in flight is cut off.
func (c *conn) closeIfIdle() bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return true
	}
	if len(c.pending) > 0 || len(c.subs) > 0 {
		c.mu.Unlock()
		return false
	}
	c.err = ErrClosed
	close(c.dead)
	c.mu.Unlock()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.ws.Close()
	return true
}

// cause is why the connection ended (nil while it is alive).
func (c *conn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *conn) readLoop() {
	var scratch bytes.Buffer
	for {
		// The frame is read into one buffer kept from frame to frame: decoding copies what
		// a reply keeps, and an event handler gets its own copy.
		_, rd, err := c.ws.NextReader()
		if err == nil {
			scratch.Reset()
			_, err = scratch.ReadFrom(rd)
		}
		if err != nil {
			c.fail(err)
			return
		}
		data := scratch.Bytes()
		r := new(wireReply)
		id, matched := decodeReply(data, r)
		if !matched {
			if r.Event != "" {
				// An event goes to its subscription's handler, which must not block: this
				// loop also carries every reply of the connection.
				c.mu.Lock()
				h := c.subs[r.Sub]
				c.mu.Unlock()
				if h != nil {
					h(bytes.Clone(data))
				}
			}
			continue // a frame that is not JSON, or "id": null, cannot be matched to a request
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// roundTrip sends req and waits for its reply, the connection's end, ctx, or timeout.
func (c *conn) roundTrip(ctx context.Context, req *command.Request, timeout time.Duration, maxFrame int) (*command.Reply, error) {
	rep, _, _, err := c.send(ctx, req, timeout, maxFrame, nil)
	return rep, err
}

// tryRoundTrip is roundTrip that also reports whether req left: sent is false when req
// was never written (the connection had ended, or req cannot be encoded within the frame
// limit), so that sending it over another connection cannot apply it twice.
func (c *conn) tryRoundTrip(ctx context.Context, req *command.Request, timeout time.Duration, maxFrame int) (rep *command.Reply, sent bool, err error) {
	rep, _, sent, err = c.send(ctx, req, timeout, maxFrame, nil)
	return rep, sent, err
}

// subscribe sends a subscribe request whose events go to onEvent (registered before the
// request leaves, so none is missed) and returns the reply and the subscription's id.
// On failure the handler is gone again.
func (c *conn) subscribe(ctx context.Context, req *command.Request, timeout time.Duration, maxFrame int, onEvent func([]byte)) (*command.Reply, string, error) {
	rep, id, _, err := c.send(ctx, req, timeout, maxFrame, onEvent)
	return rep, id, err
}

// dropSub stops dispatching the events of subscription id.
func (c *conn) dropSub(id string) {
	c.mu.Lock()
	delete(c.subs, id)
	c.mu.Unlock()
}

// send sends req under a fresh id and waits for its reply, the connection's end, ctx, or
// timeout. With onEvent, events of the subscription it opens go there. sent is false when
// req was never written: the connection had ended, or req could not be encoded.
func (c *conn) send(ctx context.Context, req *command.Request, timeout time.Duration, maxFrame int, onEvent func([]byte)) (rep *command.Reply, id string, sent bool, err error) {
	ch := make(chan *wireReply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, "", false, c.dropped()
	}
	c.nextID++
	id = strconv.FormatUint(c.nextID, 10)
	c.pending[id] = ch
	if onEvent != nil {
		c.subs[id] = onEvent
	}
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		delete(c.subs, id)
		c.mu.Unlock()
	}
	defer func() {
		if err != nil && onEvent != nil {
			c.dropSub(id)
		}
	}()

	frame, fast := appendRequestFrame(make([]byte, 0, 160+len(req.Data)+len(req.Patch)), id, req)
	if !fast {
		frame, err = json.Marshal(outFrame{ID: id, Request: req})
	}
	if err != nil {
		forget()
		return nil, id, false, command.Errorf(command.CodeBadRequest, "encoding %s request: %v", req.Op, err)
	}
	if len(frame) > maxFrame {
		// The server would answer too_large with "id": null, which cannot be matched.
		forget()
		return nil, id, false, command.Errorf(command.CodeTooLarge, "%s request is %d bytes, over the %d-byte frame limit", req.Op, len(frame), maxFrame)
	}
	deadline := time.Now().Add(timeout)
	c.wmu.Lock()
	c.ws.SetWriteDeadline(deadline)
	err = c.ws.WriteMessage(websocket.TextMessage, frame)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, id, true, c.dropped() // part of the frame may have left
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-ch:
		rep, err = r.result(req.Op)
		return rep, id, true, err
	case <-c.dead:
		select {
		case r := <-ch: // the reply won the race against the drop
			rep, err = r.result(req.Op)
			return rep, id, true, err
		default:
			return nil, id, true, c.dropped()
		}
	case <-timer.C:
		forget()
		return nil, id, true, command.Errorf(command.CodeTimeout, "no reply to %s from %s within %v", req.Op, c.addr, timeout)
	case <-ctx.Done():
		forget()
		return nil, id, true, ctx.Err()
	}
}

// dropped is the error of a request whose connection ended: unavailable, outcome unknown.
func (c *conn) dropped() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	return command.Errorf(command.CodeUnavailable, "connection to %s dropped (%v); the outcome is unknown", c.addr, err)
}

func (r *wireReply) result(op string) (*command.Reply, error) {
	if r.OK {
		return &r.Reply, nil
	}
	if r.Error == nil || r.Error.Code == "" {
		return nil, command.Errorf(command.CodeInternal, "server answered %s with neither ok nor an error", op)
	}
	return nil, r.Error
}
