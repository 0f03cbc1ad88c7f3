package node

import (
	"bytes"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/sibling"
)

// commitLinger is how long a sibling link holds a new commit point back, when it has no
// entries to send, for the next entries to carry it: under a steady flow of writes that
// saves a heartbeat (and its ack) per commit; an idle group's siblings learn the commit
// point this much later, which delays their applying it, never a write's answer.
const commitLinger = 2 * time.Millisecond

// A peerLink carries one group's replication stream from its main to one sibling: one
// WebSocket, Append frames one way, Ack frames back. It reconnects with backoff and, on every
// new connection, asks the core to probe the sibling again.
type peerLink struct {
	g          *group
	node       uint16
	kickCh     chan struct{}
	stop       chan struct{}
	stopOnce   sync.Once
	sentRound  uint64
	sentCommit uint64
}

func (l *peerLink) wake() {
	select {
	case l.kickCh <- struct{}{}:
	default:
	}
}

func (l *peerLink) close() { l.stopOnce.Do(func() { close(l.stop) }) }

// syncLinks starts a link for every sibling the core replicates to and stops the others.
// Call with g.mu held.
func (g *group) syncLinks() {
	peers := g.c.Replication().Peers()
	for id, l := range g.links {
		if _, ok := peers[id]; !ok {
			l.close()
			delete(g.links, id)
			g.dropSnapshot(id)
			delete(g.holds, id)
		}
	}
	for id := range peers {
		if _, ok := g.links[id]; !ok {
			l := &peerLink{g: g, node: id, kickCh: make(chan struct{}, 1), stop: make(chan struct{})}
			g.links[id] = l
			go l.run()
		}
	}
}

func (l *peerLink) run() {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		addr := l.g.n.nodeAddr(l.node)
		var conn *websocket.Conn
		var err error
		if addr != "" {
			u := l.g.n.peerURL("ws", addr, "/v1/internal/repl?group="+strconv.Itoa(int(l.g.id))+"&from="+strconv.Itoa(int(l.g.n.cfg.ID)))
			d := l.g.n.wsDialer(l.g.n.cfg.DownAfter)
			conn, _, err = d.Dial(u, l.g.n.internalHeader())
		}
		if conn == nil {
			l.g.log.Debug().Err(err).Uint16("sibling", l.node).Str("addr", addr).Msg("replication link down")
			select {
			case <-l.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		why := l.serve(conn)
		l.g.log.Debug().Str("why", why).Uint16("sibling", l.node).Msg("replication link closed")
		conn.Close()
	}
}

// serve runs one connection until it fails or the link stops, and says why it ended.
func (l *peerLink) serve(conn *websocket.Conn) string {
	g := l.g
	g.mu.Lock()
	if g.c.Replication() == nil {
		g.mu.Unlock()
		return "not main"
	}
	g.c.Replication().ResetPeer(l.node)
	g.mu.Unlock()

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var scratch bytes.Buffer
		for {
			// Acks are decoded into values: the message's bytes are not kept.
			b, err := readMessage(conn, &scratch)
			if err != nil {
				return
			}
			frames, err := sibling.SplitFrames(b)
			if err != nil {
				g.log.Warn().Err(err).Uint16("sibling", l.node).Msg("bad ack message")
				return
			}
			acks := make([]*sibling.Ack, 0, len(frames))
			for _, f := range frames {
				a, err := sibling.UnmarshalAck(f)
				if err != nil {
					g.log.Warn().Err(err).Uint16("sibling", l.node).Msg("bad ack frame")
					return
				}
				acks = append(acks, a)
			}
			g.onAcks(acks)
		}
	}()
	heartbeat := time.NewTicker(g.n.cfg.DownAfter / 4)
	defer heartbeat.Stop()
	var buf []byte
	var msgs []*sibling.Append // reused from one wake-up to the next
	beat := true
	// A commit point that moved while nothing else is to be sent waits up to commitLinger
	// for entries to carry it, and only then goes alone in a heartbeat.
	linger := time.NewTimer(commitLinger)
	linger.Stop()
	defer linger.Stop()
	lingering, lingered := false, false
	for {
		// Yield once before collecting: client requests already runnable propose their
		// entries first and join this message. Measured with sibyl bench at 64 clients:
		// 0.7 instead of 1.45 append messages per write (docs/write.md, "Batching").
		runtime.Gosched()
		g.mu.Lock()
		if g.c.Replication() == nil {
			g.mu.Unlock()
			return "stepped down"
		}
		clear(msgs)
		msgs = msgs[:0]
		for {
			a, err := g.c.Replication().NextAppend(l.node)
			if errors.Is(err, sibling.ErrNeedSnapshot) {
				l.startSnapshot()
				break
			}
			if err != nil {
				g.log.Error().Err(err).Uint16("sibling", l.node).Msg("cannot build append")
				break
			}
			if a == nil {
				break
			}
			msgs = append(msgs, a)
		}
		commitMoved := g.c.Replication().Commit() > l.sentCommit
		if len(msgs) == 0 && (beat || g.c.Replication().Round() > l.sentRound || (commitMoved && lingered)) {
			// nil once a config change dropped this sibling; the link is closing then.
			if hb := g.c.Replication().Heartbeat(l.node); hb != nil {
				msgs = append(msgs, hb)
			}
		}
		for _, m := range msgs {
			l.sentRound, l.sentCommit = max(l.sentRound, m.Round), max(l.sentCommit, m.CommitSeq)
		}
		g.mu.Unlock()
		beat, lingered = false, false
		switch {
		case len(msgs) > 0 && lingering: // the message carries the commit point
			linger.Stop()
			lingering = false
		case len(msgs) == 0 && commitMoved && !lingering:
			linger.Reset(commitLinger)
			lingering = true
		}
		if len(msgs) > 0 {
			// Everything ready goes in one message: one socket write per wake-up.
			buf = sibling.NewBatch(buf)
			for _, m := range msgs {
				buf = sibling.BatchAppend(buf, m)
			}
			conn.SetWriteDeadline(time.Now().Add(g.n.cfg.DownAfter))
			if err := conn.WriteMessage(websocket.BinaryMessage, buf); err != nil {
				return "write: " + err.Error()
			}
			g.n.metrics.appendMessages.Inc()
			g.n.metrics.appendFrames.Add(float64(len(msgs)))
			if cap(buf) > 1<<20 {
				buf = nil
			}
		}
		select {
		case <-l.stop:
			return "link stopped"
		case <-readerDone:
			return "ack stream ended"
		case <-heartbeat.C:
			beat = true
		case <-linger.C:
			lingering, lingered = false, true
		case <-l.kickCh:
		}
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10,
	CheckOrigin: func(*http.Request) bool { return true }}

// serveRepl is the sibling side of replication links: it reads Append frames, hands every
// batch that arrived together to the group (one fsync), and writes the acks back.
func (n *Node) serveRepl(w http.ResponseWriter, r *http.Request) {
	conn, release, ok := n.acceptInternal(w, r, 64<<20)
	if !ok {
		return
	}
	defer release()
	// The link serves one group (named in the URL): while it is open the copy hears its
	// main; when it breaks, the controller is told at once, so a crashed main is replaced
	// without waiting for its heartbeats to time out.
	gid, _ := strconv.Atoi(r.URL.Query().Get("group"))
	from, _ := strconv.Atoi(r.URL.Query().Get("from"))
	// Counted by group ID, not on the group's copy: the main may connect before this node
	// holds a copy (it just restarted with an empty disk), or the copy may be rebuilt
	// while the connection lasts; either way the copy hears its main.
	n.streamOpened(command.ServerID(gid))
	defer n.streamClosed(command.ServerID(gid), uint16(from))
	in := make(chan *sibling.Append, 256)
	go func() {
		defer close(in)
		var scratch bytes.Buffer
		for {
			b, err := readMessage(conn, &scratch)
			if err == nil {
				// Entries keep slices of the message (sibling.UnmarshalAppend): one
				// allocation of its exact size holds them all.
				b = bytes.Clone(b)
			}
			if err != nil {
				n.log.Debug().Err(err).Int("group", gid).Int("main", from).Msg("replication stream from the main ended")
				return
			}
			frames, err := sibling.SplitFrames(b)
			if err != nil {
				n.log.Warn().Err(err).Msg("bad append message")
				return
			}
			for _, f := range frames {
				m, err := sibling.UnmarshalAppend(f)
				if err != nil {
					n.log.Warn().Err(err).Msg("bad append frame")
					return
				}
				in <- m
			}
		}
	}()
	var buf []byte
	for m := range in {
		batch := []*sibling.Append{m}
	drain:
		for len(batch) < 256 {
			select {
			case more, ok := <-in:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		// Frames on one link belong to one group, but check each.
		var acks []*sibling.Ack
		for len(batch) > 0 {
			gid := batch[0].Group
			j := 1
			for j < len(batch) && batch[j].Group == gid {
				j++
			}
			g := n.ensureGroup(gid)
			if g == nil {
				break
			}
			acks = append(acks, g.handleAppends(batch[:j])...)
			batch = batch[j:]
		}
		if len(acks) > 0 {
			buf = sibling.NewBatch(buf)
			for _, a := range acks {
				buf = sibling.BatchAck(buf, a)
			}
			if err := conn.WriteMessage(websocket.BinaryMessage, buf); err != nil {
				return
			}
			n.metrics.ackMessages.Inc()
			n.metrics.ackFrames.Add(float64(len(acks)))
		}
	}
}

// streamOpened counts a replication connection from the main of group gid.
func (n *Node) streamOpened(gid command.ServerID) {
	n.streamMu.Lock()
	n.streams[gid]++
	n.streamMu.Unlock()
}

// streamsOf is how many replication connections from a main of group gid are open.
func (n *Node) streamsOf(gid command.ServerID) int {
	n.streamMu.Lock()
	defer n.streamMu.Unlock()
	return n.streams[gid]
}

// streamClosed notes a lost link from main; if it was the last, the copy is a sibling, main
// is still the directory's main of the group and the node is not shutting down, the
// controller leader hears of it.
func (n *Node) streamClosed(gid command.ServerID, main uint16) {
	n.streamMu.Lock()
	n.streams[gid]--
	left := n.streams[gid]
	if left == 0 {
		delete(n.streams, gid)
	}
	n.streamMu.Unlock()
	g := n.localGroup(gid)
	if left > 0 || g == nil || n.ctx.Err() != nil {
		return
	}
	g.mu.Lock()
	sibling := g.c.Role() == core.Sibling
	g.mu.Unlock()
	if gi := n.directoryGroup(gid); !sibling || gi == nil || gi.Main != main {
		return
	}
	go n.reportSuspect(gid, main)
}

// readMessage reads conn's next message into scratch, which keeps its capacity from one
// message to the next; the bytes returned are valid until the next call.
func readMessage(conn *websocket.Conn, scratch *bytes.Buffer) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	scratch.Reset()
	if _, err := scratch.ReadFrom(r); err != nil {
		return nil, err
	}
	return scratch.Bytes(), nil
}
