package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// serveSeal answers the controller's seal of a promotion attempt: the copy fsyncs the new
// epoch before it replies, so from then on (across restarts too) it refuses the old main,
// and it reports its last durable entry, commit point and copy ID. An automatic seal is
// refused while this copy still hears the main it would replace (docs/replication.md case 7).
func (n *Node) serveSeal(w http.ResponseWriter, r *http.Request) {
	var req command.SealRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.Server == 0 || req.Epoch == 0 {
		http.Error(w, "bad seal request", http.StatusBadRequest)
		return
	}
	g := n.localGroup(command.ServerID(req.Server))
	if g == nil {
		http.Error(w, "no copy of that group", http.StatusNotFound)
		return
	}
	if home := n.homeOf(g.id); req.Home != "" && req.Home != home && (home != "" || req.Home != n.cfg.Location) {
		// Only the group's home raises its epoch (docs/replication.md case 6). A group no
		// directory lists yet is taken to be homed in this node's own location.
		http.Error(w, fmt.Sprintf("seal of group %d from location %q refused: its home is %q", req.Server, req.Home, home), http.StatusConflict)
		return
	}
	reply, status, msg := g.seal(&req)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

func (g *group) seal(req *command.SealRequest) (command.SealReply, int, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out command.SealReply
	streams := g.n.streamsOf(g.id)
	if err := g.c.CheckSeal(req, streams > 0, time.Now()); err != nil {
		return out, http.StatusConflict, err.Error()
	}
	if g.resyncing {
		return out, http.StatusConflict, "this copy is being rebuilt from a snapshot and holds nothing to report"
	}
	if err := g.n.diskFault(); err != nil {
		return out, http.StatusServiceUnavailable, fmt.Sprintf("this node's disk fails; it cannot make the seal durable: %v", err)
	}
	m, err := g.gs.Meta()
	if err != nil {
		return out, http.StatusInternalServerError, err.Error()
	}
	if req.Epoch > m.Epoch {
		if err := g.gs.Write(&store.Batch{Epoch: req.Epoch}); err != nil {
			g.n.noteDiskFault(err)
			return out, http.StatusInternalServerError, err.Error()
		}
	}
	le, ls, commit := g.c.Seal(req.Epoch, diskOf(m, newTailLog(g.gs, m)))
	ev := g.log.Info().Uint64("epoch", req.Epoch).Uint16("from", req.From).Uint64("lastEpoch", le).Uint64("lastSeq", ls).
		Bool("auto", req.Auto).Int("streams", streams)
	if heard := g.c.LastHeard(); !heard.IsZero() {
		ev = ev.Dur("heardAgo", time.Since(heard))
	}
	ev.Msg("sealed for a promotion")
	return command.SealReply{Node: uint16(g.n.cfg.ID), LastEpoch: le, LastSeq: ls, CommitSeq: commit, CopyID: g.copyID},
		http.StatusOK, ""
}
