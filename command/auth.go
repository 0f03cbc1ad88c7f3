package command

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
)

// Roles and tokens (docs/protocol.md §7). A role is a named list of grants; a grant lets a
// token do some kinds of op on some resource types. A token names one role, or AdminRole.
// The controllers keep roles and token hashes in their directory (never a token itself),
// and every node follows that directory.

// Op kinds a grant names.
const (
	KindRead      = "read"      // get, list
	KindWrite     = "write"     // create, update, patch, delete
	KindSubscribe = "subscribe" // subscribe
	KindTicket    = "ticket"    // acquireTicket, renewTicket, releaseTicket
)

// AdminRole is the role of a token that may do everything, admin ops included. No role of
// that name can be created.
const AdminRole = "admin"

// Limits of roles and grants.
const (
	MaxRoleNameLen = 64
	MaxGrants      = 64
	MaxGrantTypes  = 64
	// TokenBytes is the entropy of a token made by NewToken: 256 bits.
	TokenBytes = 32
	// TokenPrefix starts every token NewToken makes, so that one found in a log or a
	// file is recognisable.
	TokenPrefix = "sbt_"
)

// Grant lets a token do Ops on the resource types Types names. A type pattern is a type
// (exact match) or a prefix followed by "*" ("job*" matches "job" and "jobs.x"; "*" matches
// every type).
type Grant struct {
	Types []string `json:"types"`
	Ops   []string `json:"ops"`
}

// Role is a named list of grants.
type Role struct {
	Name   string  `json:"name"`
	Grants []Grant `json:"grants"`
}

// TokenInfo is a token as the directory keeps it: the SHA-256 of the token (hex), the
// role it names, and when it expires (Unix milliseconds; 0: never).
type TokenInfo struct {
	Hash      string `json:"hash"`
	Role      string `json:"role"`
	ExpiresMs int64  `json:"expiresMs,omitempty"`
}

// Expired reports whether the token has expired at nowMs (Unix milliseconds).
func (t TokenInfo) Expired(nowMs int64) bool { return t.ExpiresMs != 0 && nowMs >= t.ExpiresMs }

// HashToken is the form a token is stored and looked up in: the hex SHA-256 of its bytes.
// A plain hash suffices because tokens are made by NewToken with 256 random bits: no
// dictionary or brute-force search can invert it, so a slow salted hash would add cost to
// every lookup and no protection.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewToken makes a token: TokenPrefix and TokenBytes random bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// OpKind is the kind of op a grant must name for op: "" for ops any valid token may call
// (status, hello, unsubscribe) and for admin ops, which need an admin token instead.
func OpKind(op string) string {
	switch op {
	case OpGet, OpList:
		return KindRead
	case OpCreate, OpUpdate, OpPatch, OpDelete:
		return KindWrite
	case OpSubscribe:
		return KindSubscribe
	case OpAcquireTicket, OpRenewTicket, OpReleaseTicket:
		return KindTicket
	}
	return ""
}

// Scope is the list of type patterns role grants kind on, each once, in the order the
// grants name them; nil when no grant names kind.
func (r *Role) Scope(kind string) []string {
	var out []string
	for _, g := range r.Grants {
		if !slices.Contains(g.Ops, kind) {
			continue
		}
		for _, t := range g.Types {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// TypeAllowed reports whether typ matches one of the patterns of scope. A nil scope is no
// restriction at all (an admin or a token without roles); an empty type matches no
// pattern, not even "*" (an entry whose type is unknown is never shown to a restricted
// token).
func TypeAllowed(scope []string, typ string) bool {
	if scope == nil {
		return true
	}
	if typ == "" {
		return false
	}
	for _, p := range scope {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(typ, prefix) {
				return true
			}
		} else if p == typ {
			return true
		}
	}
	return false
}

// ValidateRole checks a role as createRole receives it: a name of 1..64 characters of
// [a-zA-Z0-9_.-] other than AdminRole, and 1..MaxGrants grants, each with 1..MaxGrantTypes
// type patterns (a type, or a prefix of type characters followed by "*") and one or more
// of the op kinds.
func ValidateRole(name string, grants []Grant) *Error {
	if err := checkRoleName(name); err != nil {
		return err
	}
	if name == AdminRole {
		return Errorf(CodeBadRequest, "role name %q is reserved for admin tokens", name)
	}
	if len(grants) == 0 {
		return Errorf(CodeBadRequest, "role %q has no grants: give at least one {\"types\":[...],\"ops\":[...]}", name)
	}
	if len(grants) > MaxGrants {
		return Errorf(CodeBadRequest, "role %q has %d grants, more than %d", name, len(grants), MaxGrants)
	}
	for i, g := range grants {
		if len(g.Types) == 0 || len(g.Types) > MaxGrantTypes {
			return Errorf(CodeBadRequest, "grant %d of role %q: want 1 to %d types, got %d", i, name, MaxGrantTypes, len(g.Types))
		}
		for _, t := range g.Types {
			if err := checkTypePattern(t); err != nil {
				return Errorf(CodeBadRequest, "grant %d of role %q: %s", i, name, err.Message)
			}
		}
		if len(g.Ops) == 0 {
			return Errorf(CodeBadRequest, "grant %d of role %q names no ops: want some of read, write, subscribe, ticket", i, name)
		}
		for _, op := range g.Ops {
			switch op {
			case KindRead, KindWrite, KindSubscribe, KindTicket:
			default:
				return Errorf(CodeBadRequest, "grant %d of role %q: op %q is not one of read, write, subscribe, ticket", i, name, op)
			}
		}
	}
	return nil
}

func checkRoleName(name string) *Error {
	if name == "" {
		return Errorf(CodeBadRequest, "name is missing: a role needs a name")
	}
	if len(name) > MaxRoleNameLen {
		return Errorf(CodeBadRequest, "role name %q is longer than %d characters", name, MaxRoleNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !isTypeChar(name[i]) {
			return Errorf(CodeBadRequest, "role name %q has characters outside [a-zA-Z0-9_.-]", name)
		}
	}
	return nil
}

// checkTypePattern checks one type pattern of a grant.
func checkTypePattern(p string) *Error {
	if p == "*" {
		return nil
	}
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		if err := checkType(prefix); err != nil {
			return Errorf(CodeBadRequest, "type pattern %q: the prefix before * must be type characters [a-zA-Z0-9_.-]", p)
		}
		return nil
	}
	if err := checkType(p); err != nil {
		return Errorf(CodeBadRequest, "type pattern %q: %s", p, err.Message)
	}
	return nil
}

// Book resolves tokens against one version of the directories' roles and tokens. It is
// immutable; a new directory makes a new Book.
type Book struct {
	roles  map[string]*Role // the first part's
	tokens map[string]bookToken
}

// bookToken is a token's record and the roles of the part (location) that holds it.
type bookToken struct {
	info  TokenInfo
	roles map[string]*Role
}

// BookPart is one location's roles and tokens.
type BookPart struct {
	Roles  []Role
	Tokens []TokenInfo
}

// NewBook indexes roles by name and tokens by hash.
func NewBook(roles []Role, tokens []TokenInfo) *Book {
	return NewBookOf(BookPart{Roles: roles, Tokens: tokens})
}

// NewBookOf indexes several locations' roles and tokens: a token resolves against the roles
// of the part that holds it, whatever another part names the same way, and of two parts
// holding one token the first wins. Role looks in the first part only.
func NewBookOf(parts ...BookPart) *Book {
	b := &Book{roles: map[string]*Role{}, tokens: map[string]bookToken{}}
	for i, p := range parts {
		roles := make(map[string]*Role, len(p.Roles))
		for j := range p.Roles {
			roles[p.Roles[j].Name] = &p.Roles[j]
		}
		if i == 0 {
			b.roles = roles
		}
		for _, t := range p.Tokens {
			if _, dup := b.tokens[t.Hash]; !dup {
				b.tokens[t.Hash] = bookToken{info: t, roles: roles}
			}
		}
	}
	return b
}

// Lookup finds token: its record and its role (nil for an admin token). ok is false when
// the book has no such token, when it has expired at nowMs, or when its role is gone.
// The lookup is by hash, so its timing tells nothing about tokens that share a prefix.
func (b *Book) Lookup(token string, nowMs int64) (info TokenInfo, role *Role, ok bool) {
	if b == nil || token == "" {
		return TokenInfo{}, nil, false
	}
	bt, ok := b.tokens[HashToken(token)]
	info = bt.info
	if !ok || info.Expired(nowMs) {
		return TokenInfo{}, nil, false
	}
	if info.Role == AdminRole {
		return info, nil, true
	}
	role, ok = bt.roles[info.Role]
	if !ok {
		return TokenInfo{}, nil, false
	}
	return info, role, true
}

// Role returns the role named name, or nil.
func (b *Book) Role(name string) *Role {
	if b == nil {
		return nil
	}
	return b.roles[name]
}

// Len is the number of tokens the book holds.
func (b *Book) Len() int {
	if b == nil {
		return 0
	}
	return len(b.tokens)
}
