package location

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
)

// The node protocol (command/directory.go) and the controllers' registration endpoint.
// Only the leader serves them; see doc.go for the exact behaviour of each.

const (
	pathJoin       = "/v1/internal/join"
	pathHeartbeat  = "/v1/internal/heartbeat"
	pathDirectory  = "/v1/internal/directory"
	pathController = "/v1/internal/controller"
	pathSuspect    = "/v1/internal/suspect"
	pathAdmin      = "/v1/internal/admin/{op}"
	pathAbandon    = "/v1/internal/abandon"
	pathStatus     = "/v1/status"

	maxBody = 1 << 20
	// readyWait bounds how long a request waits for a new leader's barrier.
	readyWait = 2 * time.Second
)

func (c *Controller) routes() *http.ServeMux {
	mux := http.NewServeMux()
	// Every /v1/internal/ endpoint needs the cluster secret (auth.go), admin calls an admin
	// token as well.
	mux.HandleFunc("POST "+pathJoin, c.internal(c.handleJoin))
	mux.HandleFunc("POST "+pathHeartbeat, c.internal(c.handleHeartbeat))
	mux.HandleFunc("GET "+pathDirectory, c.internal(c.handleDirectory))
	mux.HandleFunc("POST "+pathController, c.internal(c.handleController))
	mux.HandleFunc("POST "+pathSuspect, c.internal(c.handleSuspect))
	mux.HandleFunc("POST "+pathAdmin, c.adminOnly(c.handleAdmin))
	mux.HandleFunc("POST "+pathAbandon, c.internal(c.handleAbandon))
	mux.HandleFunc("POST "+pathInternalAds, c.internal(c.handleInternalAds))
	mux.HandleFunc("GET "+pathAds, c.view(c.handleAds))
	mux.HandleFunc("GET "+pathLocations, c.view(c.handleLocations))
	mux.HandleFunc("GET "+pathStatus, c.anyToken(c.handleStatus))
	mux.HandleFunc("GET /healthz", c.handleHealthz)
	mux.Handle("GET /metrics", c.metricsHandler())
	mux.HandleFunc("GET /{$}", c.anyToken(statuspage.ServePage))
	mux.HandleFunc("GET "+statuspage.Path, c.anyToken(c.streamWhileValid(c.stream.ServeHTTP)))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorBody is the {"error": {...}} body of docs/protocol.md.
type errorBody struct {
	Error *command.Error `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code command.Code, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: command.Errorf(code, format, args...)})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, command.CodeBadRequest, "%s %s: decode body as %T: %v", r.Method, r.URL.Path, v, err)
		return false
	}
	return true
}

// writeHint answers 421 with the leader's HTTP address (empty when unknown or when the
// only known leader is this controller, which just failed to confirm its leadership).
func (c *Controller) writeHint(w http.ResponseWriter) {
	hint := command.LeaderHint{}
	if id := c.cons.leaderID(); id != "" && id != c.cfg.ID {
		if rec, ok := c.fsm.controller(id); ok {
			hint.Leader = rec.HTTPAddr
		}
	}
	writeJSON(w, http.StatusMisdirectedRequest, hint)
}

// leaderGate returns the current leaderTerm when this controller leads, has applied
// everything earlier leaders committed, and a quorum confirms its leadership (cached for
// verifyCacheFor). Otherwise it answers the request itself (421 or 503) and returns nil.
func (c *Controller) leaderGate(w http.ResponseWriter, r *http.Request) *leaderTerm {
	if c.ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "%v", errClosed)
		return nil
	}
	t := c.term.Load()
	if t == nil {
		if c.cons.isLeader() {
			writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "controller %s is becoming leader; retry", c.cfg.ID)
		} else {
			c.writeHint(w)
		}
		return nil
	}
	wait := time.NewTimer(readyWait)
	defer wait.Stop()
	select {
	case <-t.ready:
	case <-t.stop:
		c.writeHint(w)
		return nil
	case <-r.Context().Done():
		return nil
	case <-wait.C:
		writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "controller %s is becoming leader; retry", c.cfg.ID)
		return nil
	}
	if err := t.verify(c.cons, c.now); err != nil {
		c.writeHint(w)
		return nil
	}
	return t
}

// writeProposeError answers a failed raft command.
func (c *Controller) writeProposeError(w http.ResponseWriter, err error) {
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		writeError(w, http.StatusConflict, command.CodeConflict, "%v", err)
	case errors.Is(err, errNotLeader):
		c.writeHint(w)
	default:
		writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "%v", err)
	}
}

// handleJoin records a node at its start (joinNode through raft) and answers the directory
// that includes it.
func (c *Controller) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req command.JoinRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.ID == 0 || req.Addr == "" || req.Instance == "" {
		writeError(w, http.StatusBadRequest, command.CodeBadRequest,
			"join: id, addr and instance are required (got id=%d addr=%q instance=%q)", req.ID, req.Addr, req.Instance)
		return
	}
	if req.Location == "" {
		req.Location = c.cfg.Location
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	// A node of another location joins as a guest: groups homed here may keep copies on
	// it, and it follows this directory for them (docs/locations.md).
	cmd := joinNode{ID: req.ID, Addr: req.Addr, Location: req.Location, Instance: req.Instance, Incarnation: req.Incarnation,
		Guest: req.Location != c.cfg.Location, Wiped: req.Wiped}
	if _, err := c.cons.propose(cmd); err != nil {
		var ref *refusal
		if errors.As(err, &ref) {
			writeError(w, http.StatusBadRequest, command.CodeBadRequest, "join of node %d: %v", req.ID, err)
			return
		}
		c.writeProposeError(w, err)
		return
	}
	t.noteJoin(req.ID, c.now())
	if rec, ok := c.fsm.node(req.ID); ok {
		c.hearNode(req.ID, rec.Instance, rec.Incarnation, 0)
	}
	e := c.log.Info()
	if rec, ok := c.fsm.node(req.ID); ok && rec.Instance == req.Instance && rec.Incarnation != req.Incarnation {
		// Its incarnation counter did not survive (joinIncarnation): the data directory was
		// wiped or replaced. The node adopts the recorded incarnation from the answer.
		e = c.log.Warn().Uint64("recorded", rec.Incarnation).Str("why", "incarnation not above the recorded one: data directory wiped or replaced")
	}
	e.Uint16("node", req.ID).Str("addr", req.Addr).Str("instance", req.Instance).
		Uint64("incarnation", req.Incarnation).Msg("node joined")
	t.requestRound()
	writeJSON(w, http.StatusOK, c.directoryFor(t))
}

// handleHeartbeat records a node's liveness and reports and answers the directory.
func (c *Controller) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb command.Heartbeat
	if !decodeBody(w, r, &hb) {
		return
	}
	if hb.Node == 0 {
		writeError(w, http.StatusBadRequest, command.CodeBadRequest, "heartbeat: node id is required")
		return
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	rec, ok := c.fsm.node(hb.Node)
	if !ok {
		writeError(w, http.StatusNotFound, command.CodeNotFound, "heartbeat from node %d: the node has not joined; join first", hb.Node)
		return
	}
	if rec.Instance != hb.Instance || rec.Incarnation != hb.Incarnation {
		writeError(w, http.StatusConflict, command.CodeConflict,
			"heartbeat from node %d instance %s incarnation %d: the directory records instance %s incarnation %d; join first",
			hb.Node, hb.Instance, hb.Incarnation, rec.Instance, rec.Incarnation)
		return
	}
	if t.noteHeartbeat(hb, c.now()) {
		c.hearNode(hb.Node, hb.Instance, hb.Incarnation, hb.Generation)
		t.requestRound()
	}
	c.noteMovedHomes(hb)
	writeJSON(w, http.StatusOK, c.directoryFor(t))
}

// handleSuspect takes a sibling's report that its stream from a main broke. The leader
// probes the main at once; only a refused connection (nothing listens) marks it down early.
func (c *Controller) handleSuspect(w http.ResponseWriter, r *http.Request) {
	var sp command.Suspect
	if !decodeBody(w, r, &sp) {
		return
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	g, ok := c.fsm.group(sp.Server)
	if !ok || g.Main != sp.Main {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true}) // stale: the main changed already
		return
	}
	if n, ok := c.fsm.node(sp.Main); ok {
		t.promo.suspect(sp.Main, c.now())
		go c.probe(t, sp.Main, n.Addr)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// handleDirectory is the long poll: it answers as soon as the directory's index exceeds
// ?after=N, or after LongPoll with the current directory.
func (c *Controller) handleDirectory(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		var err error
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, command.CodeBadRequest, "directory: after=%q is not an index: %v", s, err)
			return
		}
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	deadline := time.NewTimer(c.cfg.LongPoll)
	defer deadline.Stop()
	c.polls.Add(1)
	defer c.polls.Add(-1)
	for {
		st, changed := c.fsm.view()
		if st.Index > after {
			break
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-t.stop:
			c.writeHint(w)
			return
		case <-c.ctx.Done():
			writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "%v", errClosed)
			return
		case <-r.Context().Done():
			return
		}
		break
	}
	writeJSON(w, http.StatusOK, c.directoryFor(t))
}

// handleController applies registerController for a controller of this location that is a
// member of the raft configuration at the raft address it claims.
func (c *Controller) handleController(w http.ResponseWriter, r *http.Request) {
	var rec controllerRecord
	if !decodeBody(w, r, &rec) {
		return
	}
	if rec.ID == "" || rec.HTTPAddr == "" || rec.RaftAddr == "" || rec.Location != c.cfg.Location {
		writeError(w, http.StatusBadRequest, command.CodeBadRequest,
			"register controller %+v: id, httpAddr and raftAddr are required and location must be %q", rec, c.cfg.Location)
		return
	}
	t := c.leaderGate(w, r)
	if t == nil {
		return
	}
	members, err := c.cons.members()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "register controller %s: %v", rec.ID, err)
		return
	}
	if !slices.Contains(members, raftMember{ID: rec.ID, Addr: rec.RaftAddr}) {
		writeError(w, http.StatusForbidden, command.CodeForbidden,
			"register controller %s: no raft member has that id and raft address %s (members %v)", rec.ID, rec.RaftAddr, members)
		return
	}
	if _, err := c.cons.propose(registerController{Controller: rec}); err != nil {
		c.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// handleHealthz answers 200 while raft knows a leader.
func (c *Controller) handleHealthz(w http.ResponseWriter, r *http.Request) {
	leader := c.cons.leaderID()
	if c.ctx.Err() != nil || leader == "" {
		writeError(w, http.StatusServiceUnavailable, command.CodeUnavailable, "controller %s: no raft leader", c.cfg.ID)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": leader})
}

// String renders a member for error messages.
func (m raftMember) String() string { return fmt.Sprintf("%s@%s", m.ID, m.Addr) }
