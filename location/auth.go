package location

import (
	"net/http"
	"strings"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
)

// Authentication of the controller's HTTP endpoints (docs/protocol.md §7).
//
// With Config.ClusterSecret set, every /v1/internal/ endpoint (join, heartbeat, directory,
// suspect, abandon, controller, admin) answers a call without that secret in the
// command.SecretHeader header with 401 unauthorized, before reading the body or asking
// raft anything; the controller presents the secret on every call it makes to nodes
// (seal, hand-over) and to other controllers (registration, the status proxy), and on its
// raft connections (raft_auth.go). With Config.AdminTokens set, an admin call
// (/v1/internal/admin/{op}) needs an admin token too, as "Authorization: Bearer TOKEN": one
// of Config.AdminTokens or an unexpired admin token of the directory (createToken with
// role admin); nodes pass on the token the operator authenticated with. /healthz and
// /metrics need neither; /v1/ads and /v1/locations need the secret or an admin token
// (view); /v1/status, the status page and its stream, on a controller with admin tokens,
// the secret or any valid token (anyToken).

// internal wraps the handler of a node-to-controller or controller-to-controller endpoint:
// it refuses a call without the cluster secret.
func (c *Controller) internal(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !command.SecretOK(r.Header.Get(command.SecretHeader), c.cfg.ClusterSecret) {
			c.refusals.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Msg("internal call refused: no cluster secret or a wrong one")
			writeError(w, http.StatusUnauthorized, command.CodeUnauthorized,
				"%s needs the cluster secret (%s)", r.URL.Path, command.SecretHeader)
			return
		}
		h(w, r)
	}
}

// adminOnly wraps an admin endpoint: the cluster secret, and an admin token when the
// controller has any.
func (c *Controller) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return c.internal(func(w http.ResponseWriter, r *http.Request) {
		if len(c.cfg.AdminTokens) > 0 && !c.isAdminToken(bearerToken(r)) {
			c.refusals.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Msg("admin call refused: no admin token or one the controllers do not accept")
			writeError(w, http.StatusUnauthorized, command.CodeUnauthorized,
				"admin call %s: the controllers do not accept this admin token", r.PathValue("op"))
			return
		}
		h(w, r)
	})
}

// bearerToken returns the token of an "Authorization: Bearer TOKEN" header, or "".
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

// secretTransport adds the cluster secret to every request the controller sends: seals and
// hand-overs to nodes, registrations and status proxying to other controllers.
type secretTransport struct {
	base   http.RoundTripper
	secret string
}

func (t *secretTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set(command.SecretHeader, t.secret)
	return t.base.RoundTrip(r)
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on to the base transport.
func (t *secretTransport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// withSecret wraps rt so its requests carry secret; without a secret it is rt itself.
func withSecret(rt http.RoundTripper, secret string) http.RoundTripper {
	if secret == "" {
		return rt
	}
	return &secretTransport{base: rt, secret: secret}
}

// view wraps a read-only view of the cluster's membership (GET /v1/ads, GET
// /v1/locations): it lists every process's address and identity, so a controller with a
// cluster secret or admin tokens answers only a caller presenting the secret (another
// controller, a node) or an admin token (an operator); one with neither answers everyone.
func (c *Controller) view(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.ClusterSecret == "" && len(c.cfg.AdminTokens) == 0 {
			h(w, r)
			return
		}
		secretOK := c.cfg.ClusterSecret != "" && command.SecretOK(r.Header.Get(command.SecretHeader), c.cfg.ClusterSecret)
		if !secretOK && !c.isAdminToken(bearerToken(r)) {
			c.refusals.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Msg("view refused: neither the cluster secret nor an admin token")
			writeError(w, http.StatusUnauthorized, command.CodeUnauthorized,
				"%s needs the cluster secret (%s) or an admin token", r.URL.Path, command.SecretHeader)
			return
		}
		h(w, r)
	}
}

// anyToken wraps the operators' views of a controller with tokens (/v1/status, the status
// page and its stream): with Config.AdminTokens set they need the cluster secret (a node's or
// another controller's call), an admin token, or any valid token of the directory, as a
// bearer token or, for a browser, a token query parameter. Without admin tokens they are
// open.
func (c *Controller) anyToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, open := c.viewCredentials(r)
		if open {
			h(w, r)
			return
		}
		if !c.isAdminToken(token) && !c.isValidToken(token) {
			writeError(w, http.StatusUnauthorized, command.CodeUnauthorized,
				"%s needs a token (Authorization: Bearer TOKEN, or ?token=TOKEN)", r.URL.Path)
			return
		}
		h(w, r)
	}
}

// viewCredentials reads a request for the operators' views: open when it needs no token
// (no admin tokens configured, or it carries the cluster secret), else the token it
// presents as a bearer token or, for a browser, a token query parameter.
func (c *Controller) viewCredentials(r *http.Request) (token string, open bool) {
	if len(c.cfg.AdminTokens) == 0 || (c.cfg.ClusterSecret != "" && command.SecretOK(r.Header.Get(command.SecretHeader), c.cfg.ClusterSecret)) {
		return "", true
	}
	if token = bearerToken(r); token == "" {
		token = r.URL.Query().Get("token")
	}
	return token, false
}

// streamWhileValid wraps the status stream behind anyToken: a stream opened with a token
// of the directory ends once that token stops working (revoked, expired, its role
// deleted). One opened with the secret or without admin tokens configured runs on.
func (c *Controller) streamWhileValid(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, open := c.viewCredentials(r)
		if open {
			h(w, r)
			return
		}
		statuspage.WhileValid(h, func() bool { return c.isAdminToken(token) || c.isValidToken(token) })(w, r)
	}
}

// isValidToken reports whether token is an unexpired token of the directory whose role
// exists.
func (c *Controller) isValidToken(token string) bool {
	if token == "" {
		return false
	}
	t, ok := c.fsm.token(command.HashToken(token))
	if !ok || t.Expired(c.now().UnixMilli()) {
		return false
	}
	if t.Role == command.AdminRole {
		return true
	}
	_, ok = c.fsm.role(t.Role)
	return ok
}
