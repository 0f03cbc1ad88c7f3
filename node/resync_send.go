package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/node/store"
	resync "github.com/sibylhq/sibyl/sync"
)

// A main rebuilds a sibling from a snapshot when the sibling needs entries below the
// main's compaction horizon (sibling.ErrNeedSnapshot). The link to that sibling opens a
// second connection, /v1/internal/resync, and streams a Snapshot over it with resync.Send,
// while the replication connection keeps carrying heartbeats. The snapshot stays open for
// snapshotIdle after a failed transfer so that a new connection resumes it; its seq pins
// the log (compaction keeps every entry after it) so the sibling can continue from it.

// snapshotIdle is how long a main keeps a snapshot after a failed transfer for a resume.
const snapshotIdle = 30 * time.Second

// snapshotDialer writes a chunk in few large socket writes rather than many small ones.
var snapshotDialer = websocket.Dialer{WriteBufferSize: 256 << 10}

// wsFrames adapts a WebSocket to resync.Conn.
type wsFrames struct{ c *websocket.Conn }

func (w wsFrames) WriteFrame(b []byte) error {
	w.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return w.c.WriteMessage(websocket.BinaryMessage, b)
}

func (w wsFrames) ReadFrame(timeout time.Duration) ([]byte, error) {
	w.c.SetReadDeadline(time.Now().Add(timeout))
	_, r, err := w.c.NextReader()
	if err != nil {
		return nil, err
	}
	// One buffer per frame (records alias it), reused once the receiver released it.
	b, _ := framePool.Get().([]byte)
	buf := bytes.NewBuffer(b[:0])
	_, err = buf.ReadFrom(r)
	return buf.Bytes(), err
}

// Release implements resync.Releaser.
func (wsFrames) Release(b []byte) {
	if cap(b) >= 1<<20 && cap(b) <= 4<<20 {
		framePool.Put(b[:0])
	}
}

// framePool holds chunk-sized read buffers.
var framePool = sync.Pool{New: func() any { return make([]byte, 0, 1<<20+64<<10) }}

// snapshotTransfer is a link's snapshot under way (or kept for a resume).
type snapshotTransfer struct {
	snap    *store.Snapshot
	running bool
	failed  time.Time // when the last attempt failed (zero while none failed)
	done    resync.Progress
}

// startSnapshot starts (or resumes) streaming a snapshot to the link's sibling, unless one
// is already running. Call with g.mu held.
func (l *peerLink) startSnapshot() {
	g := l.g
	t := g.snapshots[l.node]
	if t != nil && t.running {
		return
	}
	if t != nil && time.Since(t.failed) > snapshotIdle {
		t.snap.Close()
		t = nil
	}
	if a := g.holdAborted(l.node); a != nil {
		return // its registration was given up: the controller drops it
	}
	if t == nil {
		var id [8]byte
		rand.Read(id[:])
		snap, err := g.gs.Snapshot(binary.BigEndian.Uint64(id[:]) | 1)
		if err != nil {
			g.log.Error().Err(err).Uint16("sibling", l.node).Msg("cannot open a snapshot")
			l.retrySnapshotLater()
			return
		}
		snap.SetSender(g.c.Epoch(), uint16(g.n.cfg.ID))
		t = &snapshotTransfer{snap: snap}
		g.snapshots[l.node] = t
		g.n.metrics.snapshotsSent.Inc()
		h := snap.Header()
		g.log.Info().Uint16("sibling", l.node).Uint64("seq", h.Seq).Hex("id", binary.BigEndian.AppendUint64(nil, h.ID)).
			Msg("sibling is behind the log's horizon; sending a snapshot")
	}
	t.running = true
	go l.sendSnapshot(t)
}

func (l *peerLink) sendSnapshot(t *snapshotTransfer) {
	g := l.g
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	h := t.snap.Header()
	start := time.Now()
	st, err := l.streamSnapshot(ctx, t)
	g.mu.Lock()
	defer g.mu.Unlock()
	t.running = false
	if g.snapshots[l.node] != t {
		// The role ended, or the sibling left the group, while this ran: the snapshot was
		// only forgotten then, since Send may still have held records of its transaction.
		t.snap.Close()
		return
	}
	ok := err == nil
	if ok {
		delete(g.snapshots, l.node)
		t.snap.Close()
		g.log.Info().Uint16("sibling", l.node).Uint64("seq", h.Seq).Uint64("records", st.Records).
			Uint64("bytes", st.Bytes).Bool("resumed", st.Resumed).Dur("took", time.Since(start)).
			Float64("MBps", float64(st.Bytes)/1e6/max(time.Since(start).Seconds(), 1e-9)).Msg("snapshot installed")
		g.n.metrics.snapshotBytes.Add(float64(st.Bytes))
	} else {
		t.failed = time.Now()
		g.log.Warn().Err(err).Uint16("sibling", l.node).Uint64("records", st.Records).Msg("snapshot transfer failed; it resumes on the next attempt")
	}
	if !ok {
		l.retrySnapshotLater()
		return
	}
	if g.c.Replication() != nil {
		g.c.Replication().SnapshotDone(l.node, h.Seq, true)
	}
	l.wake()
}

// retrySnapshotLater leaves the sibling in the snapshot state (it hears only heartbeats at
// the empty prefix, so a copy holding part of the transfer keeps it) for a second, then
// lets the next append decide again: resume the same snapshot, or start another. The pause
// keeps a main from redialling a sibling that is down in a tight loop. Call with g.mu held.
func (l *peerLink) retrySnapshotLater() {
	g := l.g
	main := g.c.Replication()
	time.AfterFunc(time.Second, func() {
		g.mu.Lock()
		if g.c.Replication() == main && main != nil {
			main.SnapshotDone(l.node, 0, false)
		}
		g.mu.Unlock()
		l.wake()
	})
}

func (l *peerLink) streamSnapshot(ctx context.Context, t *snapshotTransfer) (resync.Stats, error) {
	g := l.g
	addr := g.n.nodeAddr(l.node)
	if addr == "" {
		return resync.Stats{}, errors.New("sibling's address is unknown")
	}
	u := g.n.peerURL("ws", addr, "/v1/internal/resync?group="+strconv.Itoa(int(g.id))+"&from="+strconv.Itoa(int(g.n.cfg.ID)))
	d := snapshotDialer
	d.HandshakeTimeout = g.n.cfg.DownAfter
	d.NetDialContext = g.n.cfg.Dial
	d.TLSClientConfig = g.n.cfg.ClientTLS
	conn, _, err := d.DialContext(ctx, u, g.n.internalHeader())
	if err != nil {
		return resync.Stats{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Under a rate cap a chunk is at most the cap's burst (a tenth of a second of rate), so
	// the transfer moves, and can resume, in steps of that size.
	chunk := 0
	if r := g.n.cfg.SyncRate; r > 0 {
		chunk = int(min(max(r/10, 16<<10), 1<<20))
	}
	return resync.Send(ctx, wsFrames{conn}, t.snap, resync.SendOptions{Rate: g.n.cfg.SyncRate, ChunkBytes: chunk,
		Progress: func(p resync.Progress) {
			g.mu.Lock()
			t.done = p
			g.mu.Unlock()
		}})
}

// closeSnapshots ends every snapshot the main holds (its role is over). Call with g.mu held.
func (g *group) closeSnapshots() {
	for n := range g.snapshots {
		g.dropSnapshot(n)
	}
}

// dropSnapshot forgets the snapshot kept for sibling n. One being sent is closed by its
// sender once Send returned (its link is stopping, which cancels the transfer): Send may
// hold records that point into the read transaction. Call with g.mu held.
func (g *group) dropSnapshot(n uint16) {
	if t := g.snapshots[n]; t != nil {
		delete(g.snapshots, n)
		if !t.running {
			t.snap.Close()
		}
	}
}

// snapshotPin is the lowest seq a snapshot being sent was taken at (0: none): compaction
// keeps the entries after it so the sibling can continue from it. A snapshot kept for a
// resume that did not come within snapshotIdle is closed here: a sibling that went away in
// the middle of a transfer must not hold the log (or bbolt's pages) forever. Call with
// g.mu held.
func (g *group) snapshotPin() uint64 {
	var pin uint64
	for n, t := range g.snapshots {
		if !t.running && !t.failed.IsZero() && time.Since(t.failed) > snapshotIdle {
			g.dropSnapshot(n)
			continue
		}
		if g.holdAborted(n) != nil {
			continue
		}
		if s := t.snap.Header().Seq; pin == 0 || s < pin {
			pin = s
		}
	}
	return pin
}
