package client

import (
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
	command.Reply
}

func newConn(ws *websocket.Conn, addr string) *conn {
	c := &conn{ws: ws, addr: addr, pending: map[string]chan *wireReply{}, dead: make(chan struct{})}
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

func (c *conn) readLoop() {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		var r wireReply
		if json.Unmarshal(data, &r) != nil || r.Event != "" {
			// Events are not dispatched yet (subscriptions come with the event stream);
			// a frame that is not JSON cannot be matched to a request either.
			continue
		}
		var id string
		if json.Unmarshal(r.ID, &id) != nil {
			continue // "id": null answers a frame the server could not read; none of ours
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- &r
		}
	}
}

// roundTrip sends req and waits for its reply, the connection's end, ctx, or timeout.
func (c *conn) roundTrip(ctx context.Context, req *command.Request, timeout time.Duration, maxFrame int) (*command.Reply, error) {
	ch := make(chan *wireReply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.dropped()
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	frame, err := json.Marshal(outFrame{ID: id, Request: req})
	if err != nil {
		forget()
		return nil, command.Errorf(command.CodeBadRequest, "encoding %s request: %v", req.Op, err)
	}
	if len(frame) > maxFrame {
		// The server would answer too_large with "id": null, which cannot be matched.
		forget()
		return nil, command.Errorf(command.CodeTooLarge, "%s request is %d bytes, over the %d-byte frame limit", req.Op, len(frame), maxFrame)
	}
	deadline := time.Now().Add(timeout)
	c.wmu.Lock()
	c.ws.SetWriteDeadline(deadline)
	err = c.ws.WriteMessage(websocket.TextMessage, frame)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, c.dropped()
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.result(req.Op)
	case <-c.dead:
		select {
		case r := <-ch: // the reply won the race against the drop
			return r.result(req.Op)
		default:
			return nil, c.dropped()
		}
	case <-timer.C:
		forget()
		return nil, command.Errorf(command.CodeTimeout, "no reply to %s from %s within %v", req.Op, c.addr, timeout)
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
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
