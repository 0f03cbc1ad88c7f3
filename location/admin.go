package location

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Admin calls (docs/protocol.md §3) arrive from nodes, which forward what operators send them:
//
//	POST /v1/internal/admin/{op}   command.Request -> command.Reply | {"error": ...}
//
// and a frozen main that waited too long for its hand-over asks:
//
//	POST /v1/internal/abandon      {"server", "epoch"} -> 200 | 409 (the choice is committed)

// HandoverRequest asks a main to freeze for a planned promotion (node endpoint
// /v1/internal/handover): stop assigning seqs, and answer once Target holds its whole log
// and everything is committed. Abort unfreezes it.
type HandoverRequest struct {
	Server uint16 `json:"server"`
	Target uint16 `json:"target"`
	Epoch  uint64 `json:"epoch"`
	Abort  bool   `json:"abort,omitempty"`
}

func (c *Controller) handleAdmin(w http.ResponseWriter, r *http.Request) {
	var req command.Request
	if !decodeBody(w, r, &req) {
		return
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	var err *command.Error
	rep := &command.Reply{}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	switch op := r.PathValue("op"); op {
	case command.OpCreateRole, command.OpDeleteRole, command.OpListRoles, command.OpCreateToken, command.OpRevokeToken:
		req.Op = op
		rep, err = c.adminAuthOp(&req)
	case command.OpPromote:
		err = c.adminPromote(ctx, t, &req, command.ReasonPlanned)
	case command.OpRegisterSibling:
		err = c.adminRegisterSibling(ctx, t, &req)
	case command.OpRemoveSibling:
		err = c.adminRemoveSibling(ctx, t, &req)
	case command.OpDrain:
		err = c.adminDrain(ctx, t, &req, adminViaOf(r))
	case command.OpRemoveNode:
		err = c.adminRemoveNode(ctx, t, &req, adminViaOf(r))
	case command.OpRehome:
		err = c.adminRehome(ctx, t, &req)
	default:
		err = command.Errorf(command.CodeBadRequest, "admin op %q is not supported by this controller yet", op)
	}
	if err != nil {
		// 422 for every refusal, so the node passes the protocol error on as it is instead
		// of trying another controller.
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: err})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// adminPromote hands group server's main role to node, a voting sibling, losing nothing
// (docs/replication.md case 13): the main stops assigning seqs and waits until node holds its
// whole log, all committed; then the new epoch with node as main (and the old main as a
// voter of the new config) is committed; node writes its barrier.
// reason is recorded with the promotion (planned, or drain).
func (c *Controller) adminPromote(ctx context.Context, t *leaderTerm, req *command.Request, reason string) *command.Error {
	asked := c.now()
	d, g, n, perr := c.groupAndNode(t, req)
	if perr != nil {
		return perr
	}
	server, node := g.Server, n.ID
	if g.Main == node {
		return nil
	}
	if m := member(g, node); m == nil || m.State != command.SiblingVoting || !slices.Contains(g.Active.Voters, node) {
		return command.Errorf(command.CodeConflict, "node %d is not a voting sibling of group %d", node, server)
	}
	if n.State != command.NodeUp {
		return command.Errorf(command.CodeUnavailable, "node %d is %s", node, n.State)
	}
	if g.Pending != nil {
		return command.Errorf(command.CodeConflict, "group %d has a pending config change; retry once it is active", server)
	}
	mainNode := d.NodeByID(g.Main)
	if mainNode == nil || mainNode.State != command.NodeUp {
		return command.Errorf(command.CodeUnavailable, "the main of group %d is not up", server)
	}
	if !t.promo.tryStart(server, time.Time{}) {
		return command.Errorf(command.CodeConflict, "a promotion of group %d is under way", server)
	}
	ok := false
	defer func() { t.promo.finish(server, ok, time.Time{}, 0) }()
	epoch := g.NextEpoch()
	if err := c.proposeLogged(beginPromotion{Server: server, Epoch: epoch, From: g.Main, Reason: reason, SuspectedMs: asked.UnixMilli()}); err != nil {
		return command.Errorf(command.CodeConflict, "promote group %d: %v", server, err)
	}
	hreq := HandoverRequest{Server: server, Target: node, Epoch: epoch}
	if err := c.postNode(ctx, mainNode.Addr, "/v1/internal/handover", hreq, 10*time.Second); err != nil {
		hreq.Abort = true
		_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: epoch})
		_ = c.postNode(context.Background(), mainNode.Addr, "/v1/internal/handover", hreq, 2*time.Second)
		return command.Errorf(command.CodeUnavailable, "promote group %d: the main did not hand over: %v", server, err)
	}
	if err := c.proposeLogged(choosePromotion{Server: server, Epoch: epoch, Main: node, Planned: true}); err != nil {
		hreq.Abort = true
		_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: epoch})
		_ = c.postNode(context.Background(), mainNode.Addr, "/v1/internal/handover", hreq, 2*time.Second)
		return command.Errorf(command.CodeUnavailable, "promote group %d: %v", server, err)
	}
	ok = true
	c.log.Info().Uint16("group", server).Uint64("epoch", epoch).Uint16("from", g.Main).Uint16("main", node).
		Msg("planned promotion: main handed over")
	return nil
}

// handleAbandon is a frozen main asking to give up a hand-over that was never committed.
func (c *Controller) handleAbandon(w http.ResponseWriter, r *http.Request) {
	var req HandoverRequest
	if !decodeBody(w, r, &req) {
		return
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	if g, ok := c.fsm.group(req.Server); ok && (g.Epoch >= req.Epoch) {
		writeError(w, http.StatusConflict, command.CodeConflict, "group %d: epoch %d was chosen", req.Server, req.Epoch)
		return
	}
	err := c.proposeLogged(abandonPromotion{Server: req.Server, Epoch: req.Epoch})
	if g, ok := c.fsm.group(req.Server); ok && g.Promotion != nil && g.Promotion.Epoch == req.Epoch &&
		g.Promotion.Phase == command.PromotionAbandoned {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		return
	}
	c.writeProposeError(w, err)
}

// postNode sends a JSON request to a node's internal endpoint and waits for 200.
func (c *Controller) postNode(ctx context.Context, addr, path string, body any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, _ := json.Marshal(body)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(addr, path), bytes.NewReader(b))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.long.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s at %s: HTTP %d: %s", path, addr, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
