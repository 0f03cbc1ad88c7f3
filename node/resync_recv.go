package node

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
	resync "github.com/sibylhq/sibyl/sync"
)

// serveResync is the sibling side of a snapshot transfer: the directory's main of the
// group, in the directory's epoch, rebuilds this copy. While it runs, the copy is
// resyncing: it answers no appends, reports no position, refuses seals and serves no
// reads, and so counts nowhere (docs/replication.md case 12).
func (n *Node) serveResync(w http.ResponseWriter, r *http.Request) {
	gid, err := strconv.ParseUint(r.URL.Query().Get("group"), 10, 16)
	if err != nil || gid == 0 {
		http.Error(w, "bad group", http.StatusBadRequest)
		return
	}
	g := n.localGroup(command.ServerID(gid))
	if g == nil {
		http.Error(w, "no copy of this group here", http.StatusNotFound)
		return
	}
	conn, release, ok := n.acceptInternal(w, r, resync.MaxRecordBytes*2+1<<20)
	if !ok {
		return
	}
	defer release()
	if !g.beginResync() {
		return
	}
	h, st, err := resync.Receive(n.ctx, wsFrames{conn}, store.Sink(g.gs), resync.ReceiveOptions{
		Accept: g.acceptSnapshot})
	n.metrics.snapshotRecords.Add(float64(st.Records))
	if st.Resumed {
		n.metrics.snapshotResumes.Inc()
	}
	g.endResync(h, err)
	if err == nil {
		g.log.Info().Uint64("seq", h.Seq).Uint64("records", st.Records).Bool("resumed", st.Resumed).
			Dur("took", st.Elapsed).Msg("copy rebuilt from a snapshot")
	}
}

// beginResync claims the copy for a transfer; false if one is already running.
func (g *group) beginResync() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.receiving {
		return false
	}
	g.receiving = true
	return true
}

// acceptSnapshot admits only the main the directory names, in its epoch, not below this
// copy's, and only on a copy that is a sibling (never the main's own copy).
func (g *group) acceptSnapshot(h resync.Header) error {
	gi := g.n.directoryGroup(g.id)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case h.Group != uint16(g.id):
		return fmt.Errorf("snapshot of group %d offered for group %d", h.Group, g.id)
	case gi == nil || gi.Main != h.Main || gi.Epoch != h.Epoch:
		return fmt.Errorf("node %d in epoch %d is not the directory's main of group %d", h.Main, h.Epoch, g.id)
	case g.c.Role() == core.Main:
		return fmt.Errorf("this copy is the group's main")
	case h.Epoch < g.c.Epoch() || h.Epoch < g.c.Sealed():
		return fmt.Errorf("epoch %d is below this copy's epoch %d", h.Epoch, max(g.c.Epoch(), g.c.Sealed()))
	}
	// From here on the copy is being rebuilt: it stops following and counts nowhere.
	g.c.Stop(nil)
	g.drain()
	g.resyncing = true
	g.resyncGen++
	g.broadcast()
	return nil
}

// endResync follows a transfer: an installed snapshot makes the copy whole at its seq and
// it follows its main again; a failed one leaves it resyncing until the main resumes.
func (g *group) endResync(h resync.Header, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.receiving = false
	if err != nil {
		g.log.Warn().Err(err).Msg("snapshot transfer failed")
		return
	}
	g.resyncing = false
	g.c.Installed(h.Seq)
	g.applied = h.Seq
	gi := g.n.directoryGroup(g.id)
	if gi == nil {
		return
	}
	self := uint16(g.n.cfg.ID)
	for _, m := range gi.Siblings {
		if m.Node == self {
			if err := g.c.Follow(gi, true, g.disk, time.Now()); err != nil {
				g.log.Error().Err(err).Msg("cannot follow the main after a resync")
			}
			g.drain()
			return
		}
	}
}

// dropResync starts a copy that was found resyncing outside a transfer (after a crash, or
// when its main changed) over as a new, empty copy: it holds nothing it acknowledged, so
// it must not carry the old copy ID either. Call with g.mu held.
func (g *group) dropResync() error {
	// The epoch is not the copy's but the node's promise never to follow an older main.
	if err := g.gs.Reset(max(g.c.Epoch(), g.c.Sealed())); err != nil {
		return err
	}
	m, err := g.gs.Meta()
	if err != nil {
		return err
	}
	g.log.Warn().Str("oldCopy", g.copyID).Str("copy", m.CopyID).Msg("the copy starts over empty")
	g.c.StartOver()
	g.drain()
	g.copyID, g.applied, g.resyncing = m.CopyID, 0, false
	g.resyncGen++
	return nil
}

// resyncAbandoned handles appends that reach a copy left resyncing by a failed transfer. A
// main that still means to resume sends only empty appends at the empty prefix; anything
// else means no snapshot is coming (the main changed, or its log reaches back far enough),
// so the copy starts over empty and follows the main from its log. It reports whether the
// appends must be ignored. Call with g.mu held.
func (g *group) resyncAbandoned(msgs []*sibling.Append) bool {
	waiting := true
	for _, m := range msgs {
		waiting = waiting && m.PrevSeq == 0 && len(m.Entries) == 0
	}
	if waiting {
		return true
	}
	if err := g.dropResync(); err != nil {
		g.log.Error().Err(err).Msg("cannot drop an unfinished resync")
		return true
	}
	gi := g.n.directoryGroup(g.id)
	if gi == nil {
		return true
	}
	err := g.c.Follow(gi, true, g.disk, time.Now())
	g.drain()
	if err != nil || g.c.Role() != core.Sibling {
		g.log.Error().Err(err).Msg("cannot follow the main")
		return true
	}
	return false
}

// retireStale follows the directory's demotion of this copy to stale: it serves nothing,
// and a copy still holding the data it had when it was demoted (staleID is the copy ID the
// directory recorded then) is wiped at once and starts over empty with a new copy ID, so
// that nothing of it can ever be read or merged again (docs/replication.md case 12 B). The
// controller registers the empty copy again. Call with g.mu held.
func (g *group) retireStale(staleID string) {
	if g.c.Role() == core.Sibling {
		g.c.Stop(nil)
		g.drain()
	}
	if g.c.Role() == core.Main || g.receiving || (staleID != "" && staleID != g.copyID) || (staleID == "" && g.applied == 0 && !g.resyncing) {
		return
	}
	g.log.Warn().Str("copy", g.copyID).Msg("this copy was demoted to stale; wiping it")
	if err := g.dropResync(); err != nil {
		g.log.Error().Err(err).Msg("cannot wipe the stale copy")
	}
}
