package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
)

// handoverRequest mirrors location.HandoverRequest (the node does not import location).
type handoverRequest struct {
	Server uint16 `json:"server"`
	Target uint16 `json:"target"`
	Epoch  uint64 `json:"epoch"`
	Abort  bool   `json:"abort,omitempty"`
}

// serveHandover freezes the main of a group for a planned promotion: it stops executing
// writes (they wait, in arrival order) and answers once the target holds the whole log and
// everything is committed. The controller then commits the new main, or aborts.
func (n *Node) serveHandover(w http.ResponseWriter, r *http.Request) {
	var req handoverRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "bad handover request", http.StatusBadRequest)
		return
	}
	g := n.localGroup(command.ServerID(req.Server))
	if g == nil {
		http.Error(w, "no copy of that group", http.StatusNotFound)
		return
	}
	if req.Abort {
		g.unfreeze(req.Epoch)
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.WriteTimeout)
	defer cancel()
	if err := g.freezeFor(ctx, req.Target, req.Epoch); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// freezeFor stops new writes and waits until target holds everything, committed.
func (g *group) freezeFor(ctx context.Context, target uint16, epoch uint64) error {
	g.mu.Lock()
	if g.c.Role() != core.Main {
		g.mu.Unlock()
		return command.Errorf(command.CodeNoMain, "node %d is not the main of group %d", g.n.cfg.ID, g.id)
	}
	g.frozen = epoch
	last := g.c.Replication().LastSeq()
	g.kick()
	g.mu.Unlock()
	go g.freezeWatchdog(epoch)
	err := g.waitFor(ctx, func() (bool, error) {
		if g.c.Role() != core.Main {
			return false, command.Errorf(command.CodeNoMain, "group %d: stepped down while handing over", g.id)
		}
		p, ok := g.c.Replication().Peers()[target]
		return ok && g.c.Commit() >= last && p.Match >= last, nil
	})
	if err != nil {
		g.unfreeze(epoch)
		return err
	}
	g.log.Info().Uint16("target", target).Uint64("epoch", epoch).Uint64("lastSeq", last).Msg("frozen for hand-over; target holds everything")
	return nil
}

// unfreeze resumes writes after an aborted hand-over.
func (g *group) unfreeze(epoch uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.frozen == epoch {
		g.frozen = 0
		g.broadcast()
	}
}

// freezeWatchdog: a main must not stay frozen forever if the controller that froze it is
// lost. It may resume only once the attempt is recorded abandoned (through raft); if the
// controller says the choice is committed, the directory will move the main role away.
func (g *group) freezeWatchdog(epoch uint64) {
	for {
		select {
		case <-g.n.ctx.Done():
			return
		case <-time.After(2 * g.n.cfg.WriteTimeout):
		}
		g.mu.Lock()
		still := g.frozen == epoch && g.c.Role() == core.Main
		g.mu.Unlock()
		if !still {
			return
		}
		ctx, cancel := context.WithTimeout(g.n.ctx, g.n.cfg.DownAfter)
		var ok map[string]bool
		err := g.n.ctrlFor(g.id).do(ctx, http.MethodPost, "/v1/internal/abandon", handoverRequest{Server: uint16(g.id), Epoch: epoch}, &ok)
		cancel()
		if err == nil {
			g.log.Warn().Uint64("epoch", epoch).Msg("hand-over abandoned; resuming writes")
			g.unfreeze(epoch)
			return
		}
	}
}
