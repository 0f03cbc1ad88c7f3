package location

import (
	"slices"
	"strings"

	"github.com/sibylhq/sibyl/command"
)

// Roles and tokens in the directory (docs/protocol.md §7). The directory holds each role by
// name and each token by its command.HashToken only, so neither the raft log, nor a
// snapshot, nor a directory a node receives ever contains a token. A token's expiry is an
// absolute time the leader computed when it proposed the token, so that applying the
// command needs no clock.

const (
	kindCreateRole  = "createRole"
	kindDeleteRole  = "deleteRole"
	kindCreateToken = "createToken"
	kindRevokeToken = "revokeToken"
)

// createRole adds a role, or replaces the grants of the role of that name: its tokens get
// the new grants with the directory that carries them.
type createRole struct {
	Role command.Role `json:"role"`
}

// deleteRole removes a role and every token that names it.
type deleteRole struct {
	Name string `json:"name"`
}

// createToken records a token's hash under a role (or command.AdminRole).
type createToken struct {
	Token command.TokenInfo `json:"token"`
}

// revokeToken removes a token by its hash.
type revokeToken struct {
	Hash string `json:"hash"`
}

func (createRole) kind() string  { return kindCreateRole }
func (deleteRole) kind() string  { return kindDeleteRole }
func (createToken) kind() string { return kindCreateToken }
func (revokeToken) kind() string { return kindRevokeToken }

func (c createRole) applyTo(s *dirState) error {
	if err := command.ValidateRole(c.Role.Name, c.Role.Grants); err != nil {
		return refuse("createRole %q: %s", c.Role.Name, err.Message)
	}
	s.Roles[c.Role.Name] = cloneRole(c.Role)
	return nil
}

func (c deleteRole) applyTo(s *dirState) error {
	if _, ok := s.Roles[c.Name]; !ok {
		return refuse("deleteRole %q: no such role", c.Name)
	}
	delete(s.Roles, c.Name)
	for h, t := range s.Tokens {
		if t.Role == c.Name {
			delete(s.Tokens, h)
		}
	}
	return nil
}

func (c createToken) applyTo(s *dirState) error {
	t := c.Token
	if !isTokenHash(t.Hash) {
		return refuse("createToken: %q is not a hex SHA-256", t.Hash)
	}
	if _, ok := s.Roles[t.Role]; !ok && t.Role != command.AdminRole {
		return refuse("createToken: no role %q", t.Role)
	}
	if _, dup := s.Tokens[t.Hash]; dup {
		return refuse("createToken: a token with that hash exists already")
	}
	s.Tokens[t.Hash] = t
	return nil
}

func (c revokeToken) applyTo(s *dirState) error {
	if _, ok := s.Tokens[c.Hash]; !ok {
		return refuse("revokeToken: no such token")
	}
	delete(s.Tokens, c.Hash)
	return nil
}

// isTokenHash reports whether h is 64 lower-case hex digits, as command.HashToken makes.
func isTokenHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	return strings.IndexFunc(h, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) < 0
}

// cloneRole deep-copies r, so that readers never share slices with the FSM.
func cloneRole(r command.Role) command.Role {
	out := command.Role{Name: r.Name, Grants: make([]command.Grant, len(r.Grants))}
	for i, g := range r.Grants {
		out.Grants[i] = command.Grant{Types: slices.Clone(g.Types), Ops: slices.Clone(g.Ops)}
	}
	return out
}

// sortedRoles returns copies of the roles ordered by name.
func (s *dirState) sortedRoles() []command.Role {
	out := make([]command.Role, 0, len(s.Roles))
	for _, r := range s.Roles {
		out = append(out, cloneRole(r))
	}
	slices.SortFunc(out, func(a, b command.Role) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sortedTokens returns the tokens ordered by hash.
func (s *dirState) sortedTokens() []command.TokenInfo {
	out := make([]command.TokenInfo, 0, len(s.Tokens))
	for _, t := range s.Tokens {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b command.TokenInfo) int { return strings.Compare(a.Hash, b.Hash) })
	return out
}
