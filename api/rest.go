package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// restRoutes adds the REST mirror of docs/protocol.md §4: each call is one request on a
// session of its own.
func (s *Server) restRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/resources", s.rest(command.OpCreate))
	mux.HandleFunc("GET /v1/resources", s.rest(command.OpList))
	mux.HandleFunc("GET /v1/resources/{rid}", s.rest(command.OpGet))
	mux.HandleFunc("PUT /v1/resources/{rid}", s.rest(command.OpUpdate))
	mux.HandleFunc("PATCH /v1/resources/{rid}", s.rest(command.OpPatch))
	mux.HandleFunc("DELETE /v1/resources/{rid}", s.rest(command.OpDelete))
	mux.HandleFunc("POST /v1/admin/{op}", s.restAdmin)
}

func (s *Server) rest(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.serveREST(w, r, op) }
}

func (s *Server) restAdmin(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if !command.IsAdminOp(op) {
		start := time.Now()
		err := command.Errorf(command.CodeNotFound, "unknown admin op %q (want registerSibling, removeSibling, promote, drain, "+
			"removeNode, rehome, createRole, deleteRole, listRoles, createToken or revokeToken)", op)
		s.metrics.observe("invalid", string(err.Code), time.Since(start))
		writeError(w, err)
		return
	}
	s.serveREST(w, r, op)
}

// serveREST runs op for one HTTP request and writes its reply or error.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, op string) {
	start := time.Now()
	rep, err := s.restCall(w, r, op)
	if err != nil {
		e := wireError(err)
		s.metrics.observe(op, string(e.Code), time.Since(start))
		writeError(w, e)
		return
	}
	body, merr := json.Marshal(shapeReply(op, rep))
	if merr != nil {
		e := command.Errorf(command.CodeInternal, "encoding the reply to op %q failed: %v", op, merr)
		s.metrics.observe(op, string(e.Code), time.Since(start))
		writeError(w, e)
		return
	}
	s.metrics.observe(op, "ok", time.Since(start))
	status := http.StatusOK
	if op == command.OpCreate {
		status = http.StatusCreated
	}
	if rep != nil && rep.Resource != nil && op != command.OpDelete {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(rep.Resource.Version, 10)))
	}
	writeJSON(w, status, body)
}

// restCall authenticates, builds the request from path, headers and body, and runs it.
func (s *Server) restCall(w http.ResponseWriter, r *http.Request, op string) (*command.Reply, error) {
	who := s.resolve(bearer(r))
	if who == nil {
		return nil, errUnauthorized()
	}
	if command.IsAdminOp(op) && !who.admin {
		return nil, command.Errorf(command.CodeForbidden, "op %q needs an admin token", op)
	}
	if err := s.checkRate(who, clientIP(r)); err != nil {
		return nil, err
	}
	req, err := s.restRequest(w, r, op)
	if err != nil {
		return nil, err
	}
	if err := permit(who, req); err != nil {
		return nil, err
	}
	sess := s.b.NewSession(nil)
	defer sess.Close()
	rep, rerr := s.start(r.Context(), sess, req, who.admin)()
	if rerr != nil {
		return nil, rerr
	}
	return filterReply(req, rep)
}

// restRequest decodes the body and folds in the path, query and headers.
// The body limit goes through w so that net/http closes the connection after answering
// an oversized body instead of reading it all.
func (s *Server) restRequest(w http.ResponseWriter, r *http.Request, op string) (*command.Request, *command.Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.opts.MaxFrameBytes)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, command.Errorf(command.CodeTooLarge, "body exceeds %d bytes", s.opts.MaxFrameBytes)
		}
		return nil, command.Errorf(command.CodeBadRequest, "reading the body failed: %v", err)
	}
	var req *command.Request
	if op == command.OpPatch && isMergePatch(r.Header.Get("Content-Type")) {
		req = &command.Request{}
		if perr := checkRawJSON(body, s.opts.MaxDepth); perr != nil {
			return nil, perr
		}
		req.Patch = json.RawMessage(body)
	} else {
		var derr *command.Error
		if req, derr = decodeBody(body, s.opts.MaxDepth); derr != nil {
			return nil, derr
		}
	}
	req.Op = op
	if rid := r.PathValue("rid"); rid != "" {
		req.RID = rid
	}
	if vals, ok := r.Header["Idempotency-Key"]; ok && (len(vals) == 0 || vals[0] == "") {
		return nil, command.Errorf(command.CodeBadRequest, "Idempotency-Key is empty: a key has 1 to %d characters", command.MaxKeyLen)
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if req.Key != "" && req.Key != key {
			return nil, command.Errorf(command.CodeBadRequest, "Idempotency-Key %q differs from body key %q", key, req.Key)
		}
		req.Key = key
	}
	if m := r.Header.Get("If-Match"); m != "" {
		v, perr := parseIfMatch(m)
		if perr != nil {
			return nil, perr
		}
		if v != nil && req.IfVersion != nil && *req.IfVersion != *v {
			return nil, command.Errorf(command.CodeBadRequest, "If-Match %s differs from body ifVersion %d", m, *req.IfVersion)
		}
		if v != nil {
			req.IfVersion = v
		}
	}
	if qerr := applyQuery(req, r); qerr != nil {
		return nil, qerr
	}
	return req, nil
}

// isMergePatch reports whether a Content-Type is application/merge-patch+json.
func isMergePatch(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/merge-patch+json"
}

// checkRawJSON checks a raw merge patch body: one JSON value, within the depth limit.
func checkRawJSON(body []byte, maxDepth int) *command.Error {
	if err := checkDepth(body, maxDepth); err != nil {
		return err
	}
	if !json.Valid(body) {
		return command.Errorf(command.CodeBadRequest, "merge patch body is not valid JSON")
	}
	return nil
}

// parseIfMatch reads If-Match: "<version>" (quotes optional). "*" matches any version,
// which is no condition at all.
func parseIfMatch(h string) (*uint64, *command.Error) {
	h = strings.TrimSpace(h)
	if h == "*" {
		return nil, nil
	}
	v, err := strconv.ParseUint(strings.Trim(h, `"`), 10, 64)
	if err != nil {
		return nil, command.Errorf(command.CodeBadRequest, "If-Match %q is not a quoted version number", h)
	}
	return &v, nil
}

// applyQuery reads the query parameters of GET calls: consistency and minSeq for get;
// type, server, after and limit for list.
func applyQuery(req *command.Request, r *http.Request) *command.Error {
	q := r.URL.Query()
	if v := q.Get("consistency"); v != "" {
		req.Consistency = v
	}
	if v := q.Get("minSeq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return command.Errorf(command.CodeBadRequest, "query minSeq %q is not a non-negative integer", v)
		}
		req.MinSeq = n
	}
	if req.Op != command.OpList {
		return nil
	}
	if v := q.Get("type"); v != "" {
		req.Type = v
	}
	if v := q.Get("after"); v != "" {
		req.After = v
	}
	if v := q.Get("server"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return command.Errorf(command.CodeBadRequest, "query server %q is not an integer", v)
		}
		req.Server = &n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return command.Errorf(command.CodeBadRequest, "query limit %q is not an integer", v)
		}
		req.Limit = n
	}
	return nil
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	var st *command.Status
	err := s.guard(command.OpStatus, func() error {
		var serr error
		st, serr = s.b.Status(r.Context())
		return realError(serr)
	})
	if err != nil {
		writeError(w, wireError(err))
		return
	}
	body, merr := json.Marshal(normalizeStatus(st))
	if merr != nil {
		writeError(w, command.Errorf(command.CodeInternal, "encoding the status failed: %v", merr))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.b.Healthy() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "unavailable\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// writeError writes {"error":{...}} with the code's HTTP status.
func writeError(w http.ResponseWriter, e *command.Error) {
	if e.Code == command.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sibyl"`)
	}
	if e.RetryAfterMs > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt((e.RetryAfterMs+999)/1000, 10))
	}
	body, err := json.Marshal(restError{Error: e})
	if err != nil { // an Error is strings and a bool; this cannot fail
		body = []byte(`{"error":{"code":"internal","message":"encoding an error failed","retryable":false}}`)
	}
	writeJSON(w, statusOf(e), body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
