package api

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
)

// Authentication and authorisation of clients (docs/protocol.md §7).
//
// A server with tokens (Options.ClientTokens, Options.AdminTokens) authenticates every
// caller by its bearer token: one of those static tokens, or a token of the roles and
// tokens the node follows in its directory (Options.Tokens). An admin token may do
// everything; a static client token every op but the admin ones, on every type; a role's
// token only the op kinds its grants name, on the types they name. The server checks what
// it can see in the request (the op, a create's or list's or subscription's type) and
// passes the caller's scope along in Request.Scope for what only the resource can tell:
// the main refuses a write to a rid of another type, this server a get of one, a list
// shows only the types in scope and a subscription delivers only their events.
//
// A token of the directory is checked again on every frame once the book changed, and a
// watcher closes the connections whose token was revoked, expired or lost its role, with
// close code 1008 (policy violation), as soon as the node has the directory that says so.

// TokenSource is the roles and tokens a node follows: its directory's book and a channel
// closed when it changes.
type TokenSource interface {
	Tokens() (*command.Book, <-chan struct{})
}

// caller is an authenticated client.
type caller struct {
	token string
	admin bool
	// role is the caller's role; nil for an admin and for a static client token (every
	// type, every op kind).
	role *command.Role
	// book is the directory book the token was found in; nil for a static token, which
	// never changes.
	book      *command.Book
	expiresMs int64
}

// authOn reports whether the server checks tokens: it has static tokens. Without, every
// caller is an admin (dev mode).
func (s *Server) authOn() bool { return len(s.opts.ClientTokens) > 0 || len(s.opts.AdminTokens) > 0 }

// everyone is the caller of a server without tokens.
var everyone = &caller{admin: true}

// resolve authenticates token; nil when it is not accepted.
func (s *Server) resolve(token string) *caller {
	if !s.authOn() {
		return everyone
	}
	if token == "" {
		return nil
	}
	if command.TokenIn(token, s.opts.AdminTokens) {
		return &caller{token: token, admin: true}
	}
	if command.TokenIn(token, s.opts.ClientTokens) {
		return &caller{token: token}
	}
	book := s.book.Load()
	info, role, ok := book.Lookup(token, time.Now().UnixMilli())
	if !ok {
		return nil
	}
	return &caller{token: token, admin: role == nil, role: role, book: book, expiresMs: info.ExpiresMs}
}

// stillValid returns who as it stands now: who itself while its book is current and it
// has not expired, else who resolved again (nil when its token no longer works).
func (s *Server) stillValid(who *caller) *caller {
	if who == nil || who.book == nil {
		return who
	}
	if who.book == s.book.Load() && (who.expiresMs == 0 || time.Now().UnixMilli() < who.expiresMs) {
		return who
	}
	return s.resolve(who.token)
}

// errUnauthorized is the answer to any request before authentication.
func errUnauthorized() *command.Error {
	return command.Errorf(command.CodeUnauthorized,
		"authenticate first: send Authorization: Bearer TOKEN or a hello frame with a valid token")
}

// permit checks that who may run req and sets req.Scope (and req.Bearer for admin ops). A
// refusal changes nothing: it comes before the request reaches the backend.
func permit(who *caller, req *command.Request) *command.Error {
	req.Scope, req.Bearer = nil, ""
	if who == nil {
		return errUnauthorized()
	}
	if command.IsAdminOp(req.Op) {
		if !who.admin {
			return command.Errorf(command.CodeForbidden, "op %q needs an admin token", req.Op)
		}
		req.Bearer = who.token
		return nil
	}
	if who.role == nil {
		return nil
	}
	kind := command.OpKind(req.Op)
	if kind == "" {
		return nil // status, unsubscribe: any valid token
	}
	scope := who.role.Scope(kind)
	if len(scope) == 0 {
		return command.Errorf(command.CodeForbidden, "role %q grants no %s: op %q is refused", who.role.Name, kind, req.Op)
	}
	// The type a request names is checked here; a rid's type only the resource can tell.
	if named := namedType(req); named != "" && !command.TypeAllowed(scope, named) {
		return command.Errorf(command.CodeForbidden, "role %q does not grant %s on type %q", who.role.Name, kind, named)
	}
	req.Scope = scope
	return nil
}

// namedType is the resource type a request names itself: a create's, a list's, a type
// subscription's.
func namedType(req *command.Request) string {
	switch req.Op {
	case command.OpCreate, command.OpList:
		return req.Type
	case command.OpSubscribe:
		if req.RID == "" && req.Server == nil {
			return req.Type
		}
	}
	return ""
}

// filterReply applies req.Scope to what a read returns: a get of a resource of another
// type is forbidden (the read changed nothing), a list keeps the resources in scope (its
// next still names where the page ended, so paging goes on past what was left out).
func filterReply(req *command.Request, rep *command.Reply) (*command.Reply, error) {
	if req.Scope == nil || rep == nil {
		return rep, nil
	}
	switch req.Op {
	case command.OpGet:
		if rep.Resource != nil && !command.TypeAllowed(req.Scope, rep.Resource.Type) {
			return nil, command.Errorf(command.CodeForbidden, "this token's role does not grant read on type %q", rep.Resource.Type)
		}
	case command.OpList:
		kept := rep.Resources[:0:0]
		for _, r := range rep.Resources {
			if command.TypeAllowed(req.Scope, r.Type) {
				kept = append(kept, r)
			}
		}
		out := *rep
		out.Resources = kept
		return &out, nil
	}
	return rep, nil
}

// requestToken is the token of an HTTP request: its bearer token, or for the GET
// endpoints a browser opens (the status page and its stream), a token query parameter.
func requestToken(r *http.Request) string {
	if t := bearer(r); t != "" {
		return t
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("token")
	}
	return ""
}

// needToken wraps a GET endpoint that any valid token may call (docs/protocol.md §7:
// /v1/status, the status page and its stream).
func (s *Server) needToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.resolve(requestToken(r)) == nil {
			writeError(w, errUnauthorized())
			return
		}
		h(w, r)
	}
}

// streamWhileValid wraps the status stream: needToken, and the stream ends once its
// caller's token stops working (revoked, expired, its role deleted).
func (s *Server) streamWhileValid(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who := s.resolve(requestToken(r))
		if who == nil {
			writeError(w, errUnauthorized())
			return
		}
		statuspage.WhileValid(h, func() bool {
			who = s.stillValid(who)
			return who != nil
		})(w, r)
	}
}

// watchTokens follows the token source: it keeps the current book for resolve, and after
// every change (and every second, for expiries) closes the connections whose token no
// longer works. It ends when the server closes.
func (s *Server) watchTokens(src TokenSource, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		book, changed := src.Tokens()
		s.book.Store(book)
		s.recheckConns()
		select {
		case <-changed:
		case <-tick.C:
		case <-done:
			return
		}
	}
}

// recheckConns closes every WebSocket connection whose caller's token stopped working.
func (s *Server) recheckConns() {
	s.mu.Lock()
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		who := c.who.Load()
		if who == nil || who.book == nil {
			continue
		}
		if now := s.stillValid(who); now == nil {
			s.metrics.revokedClose()
			s.log.Info().Str("remote", c.remote).Msg("closing a connection: its token was revoked or expired")
			c.shutdown(closePolicyViolation, "token revoked or expired")
		} else if now != who {
			c.who.CompareAndSwap(who, now)
		}
	}
}

// closePolicyViolation is the WebSocket close code of a connection whose token stopped
// working (RFC 6455 1008).
const closePolicyViolation = 1008

// bookPtr is the server's current book of directory tokens.
type bookPtr = atomic.Pointer[command.Book]
