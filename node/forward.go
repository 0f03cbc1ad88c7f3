package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
)

// Forwarding: a node that is not the main of a request's group sends it to the main over a
// WebSocket per (node, node) pair. Frames of one client session are written in the order
// the session started them, and the receiving node starts them in the order it reads them,
// so writes pipelined on one connection keep their order. A forwarded request is never
// forwarded again, and never retried by the forwarding node: if the link fails, requests in
// flight fail with a retryable code (outcome unknown) before later ones are sent.

type fwdFrame struct {
	ID    uint64           `json:"id"`
	Sess  uint64           `json:"sess"`
	Admin bool             `json:"admin,omitempty"`
	Close bool             `json:"close,omitempty"`
	Req   *command.Request `json:"req,omitempty"`
	// Scoped and Scope carry the request's command.Request.Scope, which the request's own
	// JSON leaves out: Scoped set with an empty Scope restricts to nothing.
	Scoped bool     `json:"scoped,omitempty"`
	Scope  []string `json:"scope,omitempty"`
}

type fwdReply struct {
	ID    uint64         `json:"id"`
	Reply *command.Reply `json:"reply,omitempty"`
	Err   *command.Error `json:"err,omitempty"`
}

type forwarder struct {
	n       *Node
	mu      sync.Mutex
	conns   map[uint16]*fwdConn
	dialing map[uint16]chan struct{} // closed when the dial to that node in progress ends
}

type fwdConn struct {
	target  uint16
	conn    *websocket.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan fwdReply
	dead    bool
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, conns: map[uint16]*fwdConn{}, dialing: map[uint16]chan struct{}{}}
}

// conn returns the live connection to target, dialling one if there is none. One dial per
// target at a time; it holds no lock, so an unreachable node delays only requests to it.
func (f *forwarder) conn(target uint16) (*fwdConn, error) {
	for {
		f.mu.Lock()
		if c, ok := f.conns[target]; ok && !c.isDead() {
			f.mu.Unlock()
			return c, nil
		}
		if wait, ok := f.dialing[target]; ok {
			f.mu.Unlock()
			<-wait
			continue
		}
		done := make(chan struct{})
		f.dialing[target] = done
		f.mu.Unlock()
		c, err := f.dial(target)
		f.mu.Lock()
		delete(f.dialing, target)
		if err == nil {
			f.conns[target] = c
		}
		f.mu.Unlock()
		close(done)
		return c, err
	}
}

func (f *forwarder) dial(target uint16) (*fwdConn, error) {
	addr := f.n.nodeAddr(target)
	if addr == "" {
		return nil, command.Errorf(command.CodeUnavailable, "node %d has no known address", target)
	}
	d := f.n.wsDialer(2 * time.Second)
	ws, _, err := d.Dial(f.n.peerURL("ws", addr, "/v1/internal/fwd?from="+strconv.Itoa(int(f.n.cfg.ID))), f.n.internalHeader())
	if err != nil {
		return nil, command.Errorf(command.CodeUnavailable, "node %d at %s unreachable: %v", target, addr, err)
	}
	c := &fwdConn{target: target, conn: ws, pending: map[uint64]chan fwdReply{}}
	go c.readLoop()
	return c, nil
}

func (c *fwdConn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *fwdConn) readLoop() {
	for {
		var r fwdReply
		if err := c.conn.ReadJSON(&r); err != nil {
			c.fail()
			return
		}
		c.mu.Lock()
		ch := c.pending[r.ID]
		delete(c.pending, r.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// fail ends the connection: every request in flight gets a retryable error.
func (c *fwdConn) fail() {
	c.mu.Lock()
	c.dead = true
	p := c.pending
	c.pending = map[uint64]chan fwdReply{}
	c.mu.Unlock()
	c.conn.Close()
	for id, ch := range p {
		ch <- fwdReply{ID: id, Err: command.Errorf(command.CodeUnavailable, "connection to node %d lost; outcome unknown", c.target)}
	}
}

// closeAll drops every forwarding connection (the node is closing).
func (f *forwarder) closeAll() {
	f.mu.Lock()
	conns := f.conns
	f.conns = map[uint16]*fwdConn{}
	f.mu.Unlock()
	for _, c := range conns {
		c.fail()
	}
}

// start sends one request of session sess to target and returns a wait function.
func (f *forwarder) start(ctx context.Context, target uint16, sess uint64, req *command.Request, admin bool) func() (*command.Reply, error) {
	c, err := f.conn(target)
	if err != nil {
		return failed(err)
	}
	ch := make(chan fwdReply, 1)
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return failed(command.Errorf(command.CodeUnavailable, "connection to node %d lost", target))
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	err = c.conn.WriteJSON(fwdFrame{ID: id, Sess: sess, Admin: admin, Req: req, Scoped: req.Scope != nil, Scope: req.Scope})
	c.wmu.Unlock()
	if err != nil {
		c.fail()
	}
	return func() (*command.Reply, error) {
		select {
		case r := <-ch:
			if r.Err != nil {
				return nil, r.Err
			}
			return r.Reply, nil
		case <-ctx.Done():
			return nil, command.Errorf(command.CodeTimeout, "forwarded request to node %d not answered in time", target)
		}
	}
}

// closeSession tells every peer holding state for session sess to drop it.
func (f *forwarder) closeSession(sess uint64) {
	f.mu.Lock()
	conns := make([]*fwdConn, 0, len(f.conns))
	for _, c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		if c.isDead() {
			continue
		}
		c.wmu.Lock()
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.conn.WriteJSON(fwdFrame{Sess: sess, Close: true})
		c.wmu.Unlock()
	}
}

// serveFwd is the receiving side: requests are started in the order read, each remote
// session getting a local Session that never forwards again.
func (n *Node) serveFwd(w http.ResponseWriter, r *http.Request) {
	conn, release, ok := n.acceptInternal(w, r, 8<<20)
	if !ok {
		return
	}
	defer release()
	var wmu sync.Mutex
	sessions := map[uint64]*Session{}
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var f fwdFrame
		if err := json.Unmarshal(b, &f); err != nil {
			n.log.Warn().Err(err).Msg("bad forwarded frame")
			return
		}
		s := sessions[f.Sess]
		if f.Close {
			if s != nil {
				s.Close()
				delete(sessions, f.Sess)
			}
			continue
		}
		if f.Req == nil {
			continue
		}
		if f.Scoped {
			f.Req.Scope = f.Scope
			if f.Req.Scope == nil {
				f.Req.Scope = []string{}
			}
		}
		if s == nil {
			s = n.newSession(true)
			sessions[f.Sess] = s
		}
		wait := s.Start(n.ctx, f.Req, f.Admin) // ends with the node
		go func(id uint64) {
			reply, err := wait()
			out := fwdReply{ID: id, Reply: reply}
			if err != nil {
				out.Reply, out.Err = nil, command.AsError(err)
			}
			wmu.Lock()
			defer wmu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_ = conn.WriteJSON(out)
		}(f.ID)
	}
}
