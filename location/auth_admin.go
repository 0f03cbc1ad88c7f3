package location

import (
	"errors"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The admin ops on roles and tokens (docs/protocol.md §7), served at the leader like the
// other admin calls (admin.go). Each checks the request against the directory first, so
// that the usual refusals carry their protocol code, then proposes its command; the FSM
// checks again, in log order.

// adminAuthOp runs createRole, deleteRole, listRoles, createToken or revokeToken.
func (c *Controller) adminAuthOp(req *command.Request) (*command.Reply, *command.Error) {
	if err := command.ValidateRequest(req); err != nil {
		return nil, err
	}
	switch req.Op {
	case command.OpCreateRole:
		role := cloneRole(command.Role{Name: req.Name, Grants: req.Grants})
		if err := c.proposeAuth(createRole{Role: role}); err != nil {
			return nil, err
		}
		c.log.Info().Str("role", role.Name).Int("grants", len(role.Grants)).Msg("role created")
		return &command.Reply{}, nil
	case command.OpDeleteRole:
		if _, ok := c.fsm.role(req.Name); !ok {
			return nil, command.Errorf(command.CodeNotFound, "no role %q", req.Name)
		}
		if err := c.proposeAuth(deleteRole{Name: req.Name}); err != nil {
			return nil, err
		}
		c.log.Info().Str("role", req.Name).Msg("role deleted, and the tokens that named it")
		return &command.Reply{}, nil
	case command.OpListRoles:
		st, _ := c.fsm.view()
		return &command.Reply{Roles: st.sortedRoles()}, nil
	case command.OpCreateToken:
		return c.createToken(req)
	case command.OpRevokeToken:
		hash := command.HashToken(req.Token)
		if _, ok := c.fsm.token(hash); !ok {
			return nil, command.Errorf(command.CodeNotFound, "no such token (unknown, or revoked already)")
		}
		if err := c.proposeAuth(revokeToken{Hash: hash}); err != nil {
			return nil, err
		}
		c.log.Info().Str("token", hash[:12]).Msg("token revoked")
		return &command.Reply{}, nil
	}
	return nil, command.Errorf(command.CodeBadRequest, "op %q is not a role or token op", req.Op)
}

// createToken makes a token for an existing role (or command.AdminRole), records its hash,
// and returns the token: the only time it is ever shown.
func (c *Controller) createToken(req *command.Request) (*command.Reply, *command.Error) {
	if _, ok := c.fsm.role(req.Role); !ok && req.Role != command.AdminRole {
		return nil, command.Errorf(command.CodeNotFound, "no role %q", req.Role)
	}
	tok, err := command.NewToken()
	if err != nil {
		return nil, command.Errorf(command.CodeInternal, "make a token: %v", err)
	}
	info := command.TokenInfo{Hash: command.HashToken(tok), Role: req.Role}
	if req.TTLMs != nil {
		info.ExpiresMs = c.now().Add(time.Duration(*req.TTLMs) * time.Millisecond).UnixMilli()
	}
	if err := c.proposeAuth(createToken{Token: info}); err != nil {
		return nil, err
	}
	c.log.Info().Str("token", info.Hash[:12]).Str("role", info.Role).Int64("expiresMs", info.ExpiresMs).Msg("token created")
	return &command.Reply{Token: tok}, nil
}

// proposeAuth proposes cmd: a refusal is a conflict (the directory changed since the
// check), anything else unavailable (leadership lost; the outcome is unknown).
func (c *Controller) proposeAuth(cmd dirCommand) *command.Error {
	err := c.proposeLogged(cmd)
	var ref *refusal
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ref):
		return command.Errorf(command.CodeConflict, "%s: %v", cmd.kind(), err)
	}
	return command.Errorf(command.CodeUnavailable, "%s: %v", cmd.kind(), err)
}

// isAdminToken reports whether token is one of the controller's --admin-token or an
// unexpired admin token of the directory.
func (c *Controller) isAdminToken(token string) bool {
	if token == "" {
		return false
	}
	if command.TokenIn(token, c.cfg.AdminTokens) {
		return true
	}
	t, ok := c.fsm.token(command.HashToken(token))
	return ok && t.Role == command.AdminRole && !t.Expired(c.now().UnixMilli())
}
