package command

import (
	"encoding/json"
	"unicode/utf8"
)

// Limits of docs/protocol.md §2.
const (
	MaxTypeLen   = 64
	MaxKeyLen    = 128
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ClampLimit maps a list "limit" to the number of resources a page holds.
func ClampLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultLimit
	case limit > MaxLimit:
		return MaxLimit
	}
	return limit
}

// ValidateRequest checks that req has the fields its op needs, each well-formed. It looks
// only at the request, never at state, so every node can refuse a bad request before
// forwarding it. Fields an op does not define are ignored.
func ValidateRequest(req *Request) *Error {
	switch req.Op {
	case OpCreate:
		return first(checkType(req.Type), checkData("data", req.Data, req.JSONChecked),
			checkServer("server", req.Server, false), checkKey(req.Key))
	case OpGet:
		return first(checkRID("rid", req.RID, true), checkConsistency(req.Consistency))
	case OpUpdate:
		return first(checkRID("rid", req.RID, true), checkData("data", req.Data, req.JSONChecked),
			checkIfVersion(req.IfVersion), checkKey(req.Key))
	case OpPatch:
		return first(checkRID("rid", req.RID, true), checkData("patch", req.Patch, req.JSONChecked),
			checkIfVersion(req.IfVersion), checkKey(req.Key))
	case OpDelete:
		return first(checkRID("rid", req.RID, true), checkIfVersion(req.IfVersion), checkKey(req.Key))
	case OpList:
		var typ *Error
		if req.Type != "" {
			typ = checkType(req.Type)
		}
		return first(typ, checkServer("server", req.Server, false), checkRID("after", req.After, false),
			checkConsistency(req.Consistency))
	case OpSubscribe:
		return checkSubscribe(req)
	case OpUnsubscribe:
		if req.Sub == "" {
			return Errorf(CodeBadRequest, "unsubscribe needs sub")
		}
		return nil
	case OpAcquireTicket:
		return first(checkRID("rid", req.RID, true), checkTTL(req.TTLMs), checkKey(req.Key))
	case OpRenewTicket:
		return first(checkRID("rid", req.RID, true), checkFence(req.Ticket), checkTTL(req.TTLMs), checkKey(req.Key))
	case OpReleaseTicket:
		return first(checkRID("rid", req.RID, true), checkFence(req.Ticket), checkKey(req.Key))
	case OpStatus, OpHello:
		return nil
	case OpRegisterSibling, OpRemoveSibling, OpPromote:
		return first(checkServer("server", req.Server, true), checkServer("node", req.Node, true))
	case OpDrain, OpRemoveNode:
		return checkServer("node", req.Node, true)
	case OpRehome:
		if req.Location == "" {
			return Errorf(CodeBadRequest, "location is missing: rehome needs the location that takes the group over")
		}
		return checkServer("server", req.Server, true)
	case OpCreateRole:
		return ValidateRole(req.Name, req.Grants)
	case OpDeleteRole:
		return checkRoleName(req.Name)
	case OpListRoles:
		return nil
	case OpCreateToken:
		return first(checkTokenRole(req.Role), checkTokenTTL(req.TTLMs))
	case OpRevokeToken:
		if req.Token == "" {
			return Errorf(CodeBadRequest, "token is missing: revokeToken needs the token to revoke")
		}
		return nil
	case "":
		return Errorf(CodeBadRequest, "op is missing")
	}
	return Errorf(CodeBadRequest, "unknown op %q", req.Op)
}

// first returns the first failure of checks that have all been evaluated; the checks are
// cheap, and listing them in one call keeps each op's rule on one line.
func first(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func checkType(t string) *Error {
	if t == "" {
		return Errorf(CodeBadRequest, "type is missing")
	}
	if len(t) > MaxTypeLen {
		return Errorf(CodeBadRequest, "type %q is longer than %d characters", t, MaxTypeLen)
	}
	for i := 0; i < len(t); i++ {
		if !isTypeChar(t[i]) {
			return Errorf(CodeBadRequest, "type %q has characters outside [a-zA-Z0-9_.-]", t)
		}
	}
	return nil
}

func isTypeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-'
}

// checkData checks a required JSON field (data or patch). The depth limit protects every
// later decoder of the stored value, including the recursive merge patch.
func checkData(field string, raw json.RawMessage, checked bool) *Error {
	if len(raw) == 0 {
		return Errorf(CodeBadRequest, "%s is missing", field)
	}
	if checked {
		return nil
	}
	return checkValid(field, raw)
}

func checkValid(what string, raw json.RawMessage) *Error {
	valid, depth, _ := ScanJSON(raw)
	if !valid {
		return Errorf(CodeBadRequest, "%s is not valid JSON", what)
	}
	if depth > MaxDepth {
		return Errorf(CodeBadRequest, "%s: JSON is nested deeper than %d levels", what, MaxDepth)
	}
	return nil
}

// checkRID checks a rid-valued field; an empty optional one is absent.
func checkRID(field, rid string, required bool) *Error {
	if rid == "" {
		if required {
			return Errorf(CodeBadRequest, "%s is missing", field)
		}
		return nil
	}
	if _, err := ParseRID(rid); err != nil {
		e := AsError(err)
		if field != "rid" {
			return Errorf(e.Code, "%s: %s", field, e.Message)
		}
		return e
	}
	return nil
}

// checkServer checks a server-ID-valued field (server, node).
func checkServer(field string, v *int64, required bool) *Error {
	if v == nil {
		if required {
			return Errorf(CodeBadRequest, "%s is missing", field)
		}
		return nil
	}
	if *v < 1 || *v > 65535 {
		return Errorf(CodeBadRequest, "%s %d is not in 1..65535", field, *v)
	}
	return nil
}

func checkKey(k string) *Error {
	// An empty key is an absent key here: Request cannot tell them apart. The API layer
	// refuses a "key":"" it reads (api/frame.go), so a client's empty key never gets here.
	if k == "" {
		return nil
	}
	if !utf8.ValidString(k) {
		return Errorf(CodeBadRequest, "key %q is not valid UTF-8", k)
	}
	if n := utf8.RuneCountInString(k); n > MaxKeyLen {
		return Errorf(CodeBadRequest, "key has %d characters, more than %d", n, MaxKeyLen)
	}
	return nil
}

func checkIfVersion(v *uint64) *Error {
	// Versions start at 1, so ifVersion 0 could never match: refusing it tells the
	// client about its bug instead of a conflict it cannot resolve.
	if v != nil && *v == 0 {
		return Errorf(CodeBadRequest, "ifVersion 0 is not a version (versions start at 1)")
	}
	return nil
}

func checkConsistency(c string) *Error {
	switch c {
	case "", Linearizable, SiblingRead:
		return nil
	}
	return Errorf(CodeBadRequest, "consistency %q is not %q or %q", c, Linearizable, SiblingRead)
}

func checkTTL(ttl *int64) *Error {
	if ttl == nil {
		return Errorf(CodeBadRequest, "ttlMs is missing")
	}
	if *ttl <= 0 {
		return Errorf(CodeBadRequest, "ttlMs %d is not positive", *ttl)
	}
	if *ttl > MaxTicketTTLMs {
		return Errorf(CodeBadRequest, "ttlMs %d is more than %d (24 h)", *ttl, MaxTicketTTLMs)
	}
	return nil
}

func checkFence(f *uint64) *Error {
	if f == nil {
		return Errorf(CodeBadRequest, "ticket is missing")
	}
	return nil
}

func checkSubscribe(req *Request) *Error {
	n := 0
	if req.RID != "" {
		n++
	}
	if req.Server != nil {
		n++
	}
	if req.Type != "" {
		n++
	}
	if n != 1 {
		return Errorf(CodeBadRequest, "subscribe needs exactly one of rid, server, type (got %d)", n)
	}
	switch {
	case req.RID != "":
		return checkRID("rid", req.RID, true)
	case req.Server != nil:
		return checkServer("server", req.Server, true)
	}
	return checkType(req.Type)
}

// checkTokenRole checks createToken's role: a role name or AdminRole.
func checkTokenRole(role string) *Error {
	if role == "" {
		return Errorf(CodeBadRequest, "role is missing: a token names a role, or %q", AdminRole)
	}
	return checkRoleName(role)
}

// MaxTokenTTLMs bounds createToken's ttlMs: ten years.
const MaxTokenTTLMs = 10 * 365 * 24 * 3600 * 1000

// checkTokenTTL checks createToken's optional ttlMs: absent (no expiry) or 1..MaxTokenTTLMs.
func checkTokenTTL(ttl *int64) *Error {
	if ttl == nil {
		return nil
	}
	if *ttl < 1 || *ttl > MaxTokenTTLMs {
		return Errorf(CodeBadRequest, "ttlMs %d: want 1 to %d (or leave it out: no expiry)", *ttl, int64(MaxTokenTTLMs))
	}
	return nil
}
