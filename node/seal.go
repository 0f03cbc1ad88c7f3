package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// serveSeal answers the controller's seal of a promotion attempt: the copy fsyncs the new
// epoch before it replies, so from then on (across restarts too) it refuses the old main,
// and it reports its last durable entry, commit point, copy ID and the highest config
// version it followed (configs.go). An automatic seal is refused while this copy still
// hears the main it would replace (docs/replication.md case 7).
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
	rec, err := n.sealHome(g.id, &req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	reply, status, msg := g.seal(&req, rec)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

// sealHome checks that req comes from group id's home (docs/replication.md case 6,
// docs/locations.md "Moving a home") and returns the home record the seal makes (nil: none
// to record). The copy's recorded home, else the directories' (a group no directory lists
// yet is taken to be homed in this node's own location), decides:
//   - a seal of an older home generation is refused: a later home fenced it;
//   - of the same generation, only that home's;
//   - of a later generation (a rehome), only when it names as replaced the home this copy
//     knows and this node hears no controller of that home nor of the replaced one within
//     down-after that still lists the group: the copy's own check that the home it promised
//     is gone. A home that answers but no longer lists the group dropped it (disownGroup)
//     and never acts for it again; a later home's seals must then pass, or a copy sealed by
//     an intermediate home that came back would refuse the group's next homes for good.
func (n *Node) sealHome(id command.ServerID, req *command.SealRequest) (*homeRecord, error) {
	if req.Home == "" {
		return nil, nil
	}
	known, recorded := n.homes.get(id)
	if !recorded {
		known = homeRecord{Home: n.cfg.Location}
		if gi := n.directoryGroup(id); gi != nil {
			known = homeRecord{Home: gi.Home, Gen: gi.HomeGen}
		}
	}
	switch {
	case req.HomeGen < known.Gen:
		return nil, fmt.Errorf("seal of group %d from location %q refused: it was homed there at generation %d, and is homed in %q at generation %d since",
			req.Server, req.Home, req.HomeGen, known.Home, known.Gen)
	case req.HomeGen == known.Gen:
		if req.Home != known.Home {
			return nil, fmt.Errorf("seal of group %d from location %q refused: its home is %q", req.Server, req.Home, known.Home)
		}
		if recorded || req.HomeGen == 0 {
			return nil, nil
		}
	default:
		if req.RehomedFrom == "" || (req.RehomedFrom != known.Home && req.HomeGen == known.Gen+1) {
			return nil, fmt.Errorf("seal of group %d from location %q at home generation %d refused: this copy knows %q as its home at generation %d, and the seal does not replace it",
				req.Server, req.Home, req.HomeGen, known.Home, known.Gen)
		}
		for _, loc := range []string{known.Home, req.RehomedFrom} {
			if at, ok := n.heardFrom(loc); ok && time.Since(at) < n.cfg.DownAfter && n.listsGroup(loc, id) {
				return nil, fmt.Errorf("seal of group %d from location %q refused: this node still hears the controllers of %q (%s ago), the home it replaces",
					req.Server, req.Home, loc, time.Since(at).Round(time.Millisecond))
			}
		}
	}
	return &homeRecord{Home: req.Home, Gen: req.HomeGen}, nil
}

// listsGroup: the directory location loc's controllers last answered lists group id as
// homed there.
func (n *Node) listsGroup(loc string, id command.ServerID) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	l := n.links[loc]
	if l == nil || l.dir == nil {
		return false
	}
	gi := l.dir.Group(uint16(id))
	return gi != nil && (gi.Home == "" || gi.Home == loc)
}

// heardFrom returns when location loc's controllers last answered this node.
func (n *Node) heardFrom(loc string) (time.Time, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	l := n.links[loc]
	if l == nil || l.heard.IsZero() {
		return time.Time{}, false
	}
	return l.heard, true
}

// seal makes the copy promise req's epoch, recording home first when it is set (the home
// that sealed it, durable before the epoch is).
func (g *group) seal(req *command.SealRequest, home *homeRecord) (command.SealReply, int, string) {
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
	if home != nil {
		if err := g.n.homes.record(g.id, *home); errors.Is(err, errHomePromised) {
			return out, http.StatusConflict, err.Error()
		} else if err != nil {
			g.n.noteDiskFault(err)
			return out, http.StatusInternalServerError, err.Error()
		}
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
	return command.SealReply{Node: uint16(g.n.cfg.ID), Epoch: max(req.Epoch, m.Epoch), LastEpoch: le, LastSeq: ls, CommitSeq: commit, CopyID: g.copyID,
			Config: g.n.configs.get(g.id)},
		http.StatusOK, ""
}
