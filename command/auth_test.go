package command

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestTypeAllowed(t *testing.T) {
	for _, tc := range []struct {
		scope []string
		typ   string
		want  bool
	}{
		{nil, "anything", true},
		{nil, "", true},
		{[]string{"job"}, "job", true},
		{[]string{"job"}, "jobs", false},
		{[]string{"job"}, "jo", false},
		{[]string{"job"}, "Job", false},
		{[]string{"job*"}, "job", true},
		{[]string{"job*"}, "jobs.x", true},
		{[]string{"job*"}, "jo", false},
		{[]string{"job*"}, "xjob", false},
		{[]string{"*"}, "anything", true},
		{[]string{"*"}, "", false},
		{[]string{"doc", "job*"}, "doc", true},
		{[]string{"doc", "job*"}, "docs", false},
		{[]string{}, "job", false},
	} {
		if got := TypeAllowed(tc.scope, tc.typ); got != tc.want {
			t.Errorf("TypeAllowed(%q, %q) = %v, want %v", tc.scope, tc.typ, got, tc.want)
		}
	}
}

func TestRoleScopeByOpKind(t *testing.T) {
	r := Role{Name: "r", Grants: []Grant{
		{Types: []string{"job", "doc*"}, Ops: []string{KindRead, KindSubscribe}},
		{Types: []string{"job"}, Ops: []string{KindWrite}},
		{Types: []string{"lock"}, Ops: []string{KindTicket, KindRead}},
	}}
	for _, tc := range []struct {
		op   string
		want []string
	}{
		{OpGet, []string{"job", "doc*", "lock"}},
		{OpList, []string{"job", "doc*", "lock"}},
		{OpSubscribe, []string{"job", "doc*"}},
		{OpCreate, []string{"job"}},
		{OpUpdate, []string{"job"}},
		{OpPatch, []string{"job"}},
		{OpDelete, []string{"job"}},
		{OpAcquireTicket, []string{"lock"}},
		{OpRenewTicket, []string{"lock"}},
		{OpReleaseTicket, []string{"lock"}},
	} {
		kind := OpKind(tc.op)
		if got := r.Scope(kind); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s (kind %q): scope %q, want %q", tc.op, kind, got, tc.want)
		}
	}
	for _, op := range []string{OpStatus, OpHello, OpUnsubscribe, OpPromote, OpCreateToken} {
		if k := OpKind(op); k != "" {
			t.Errorf("OpKind(%s) = %q, want none", op, k)
		}
	}
	if s := (&Role{Grants: []Grant{{Types: []string{"job"}, Ops: []string{KindRead}}}}).Scope(KindWrite); s != nil {
		t.Errorf("a role without write grants has write scope %q, want nil", s)
	}
	for _, op := range []string{OpRegisterSibling, OpRemoveSibling, OpPromote, OpDrain, OpRemoveNode,
		OpCreateRole, OpDeleteRole, OpListRoles, OpCreateToken, OpRevokeToken} {
		if !IsAdminOp(op) {
			t.Errorf("IsAdminOp(%s) = false", op)
		}
	}
	for _, op := range []string{OpCreate, OpGet, OpSubscribe, OpStatus, OpHello} {
		if IsAdminOp(op) {
			t.Errorf("IsAdminOp(%s) = true", op)
		}
	}
}

func TestHashToken(t *testing.T) {
	// The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
	if got := HashToken("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashToken(abc) = %s", got)
	}
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Fatalf("NewToken: %q and %q; want distinct %s tokens of 256 bits", a, b, TokenPrefix)
	}
	if HashToken(a) == HashToken(b) || strings.Contains(HashToken(a), a[len(TokenPrefix):]) {
		t.Fatal("hashes of two tokens collide or contain the token")
	}
}

func TestBookLookup(t *testing.T) {
	reader := Role{Name: "reader", Grants: []Grant{{Types: []string{"job"}, Ops: []string{KindRead}}}}
	b := NewBook([]Role{reader}, []TokenInfo{
		{Hash: HashToken("tok-reader"), Role: "reader"},
		{Hash: HashToken("tok-admin"), Role: AdminRole},
		{Hash: HashToken("tok-expiring"), Role: "reader", ExpiresMs: 1000},
		{Hash: HashToken("tok-orphan"), Role: "gone"},
	})
	for _, tc := range []struct {
		token    string
		nowMs    int64
		ok       bool
		role     string // "" for admin
		wantRole bool
	}{
		{"tok-reader", 5000, true, "reader", true},
		{"tok-admin", 5000, true, "", false},
		{"tok-expiring", 999, true, "reader", true},
		{"tok-expiring", 1000, false, "", false},
		{"tok-orphan", 5000, false, "", false},
		{"unknown", 5000, false, "", false},
		{"", 5000, false, "", false},
		{"tok-reade", 5000, false, "", false},
	} {
		_, role, ok := b.Lookup(tc.token, tc.nowMs)
		if ok != tc.ok || (role != nil) != tc.wantRole || (role != nil && role.Name != tc.role) {
			t.Errorf("Lookup(%q, %d) = role %v ok %v, want role %q ok %v", tc.token, tc.nowMs, role, ok, tc.role, tc.ok)
		}
	}
	var nilBook *Book
	if _, _, ok := nilBook.Lookup("tok-reader", 0); ok || nilBook.Len() != 0 {
		t.Fatal("a nil book accepts a token")
	}
}

func TestValidateRole(t *testing.T) {
	g := func(types []string, ops ...string) Grant { return Grant{Types: types, Ops: ops} }
	ok := []Grant{g([]string{"job", "doc*", "*"}, KindRead, KindWrite, KindSubscribe, KindTicket)}
	if err := ValidateRole("ops-team.1", ok); err != nil {
		t.Fatalf("a valid role refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		grants []Grant
		want   string
	}{
		{"", ok, "name is missing"},
		{"admin", ok, "reserved"},
		{"a b", ok, "characters"},
		{strings.Repeat("r", 65), ok, "longer"},
		{"r", nil, "no grants"},
		{"r", []Grant{g(nil, KindRead)}, "types"},
		{"r", []Grant{g([]string{"job"})}, "no ops"},
		{"r", []Grant{g([]string{"job"}, "admin")}, "not one of"},
		{"r", []Grant{g([]string{"jo*b"}, KindRead)}, "type pattern"},
		{"r", []Grant{g([]string{""}, KindRead)}, "type"},
		{"r", []Grant{g([]string{"**"}, KindRead)}, "type pattern"},
	} {
		err := ValidateRole(tc.name, tc.grants)
		if err == nil || err.Code != CodeBadRequest || !strings.Contains(err.Message, tc.want) {
			t.Errorf("ValidateRole(%q, %+v) = %v, want bad_request mentioning %q", tc.name, tc.grants, err, tc.want)
		}
	}
	ttl := int64(0)
	for _, req := range []*Request{
		{Op: OpCreateToken},
		{Op: OpCreateToken, Role: "r", TTLMs: &ttl},
		{Op: OpDeleteRole},
		{Op: OpRevokeToken},
	} {
		if err := ValidateRequest(req); err == nil || err.Code != CodeBadRequest {
			t.Errorf("ValidateRequest(%+v) = %v, want bad_request", req, err)
		}
	}
}

// A write whose scope does not grant the resource's type is forbidden before anything is
// looked up, also when it repeats another caller's keyed write; nothing changes.
func TestExecuteScope(t *testing.T) {
	h := newHarness(t)
	job := h.ok(&Request{Op: OpCreate, Type: "job", Data: json.RawMessage(`1`), Key: "k1"}).Reply.Resource
	doc := h.ok(&Request{Op: OpCreate, Type: "doc", Data: json.RawMessage(`1`)}).Reply.Resource
	jobs := []string{"job*"}
	ttl := int64(1000)
	one := uint64(1)
	for _, tc := range []struct {
		req  *Request
		want Code
	}{
		{&Request{Op: OpCreate, Type: "doc", Data: json.RawMessage(`2`), Scope: jobs}, CodeForbidden},
		{&Request{Op: OpUpdate, RID: doc.ID, Data: json.RawMessage(`2`), Scope: jobs}, CodeForbidden},
		{&Request{Op: OpPatch, RID: doc.ID, Patch: json.RawMessage(`{}`), Scope: jobs}, CodeForbidden},
		{&Request{Op: OpDelete, RID: doc.ID, Scope: jobs}, CodeForbidden},
		{&Request{Op: OpAcquireTicket, RID: doc.ID, TTLMs: &ttl, Scope: jobs}, CodeForbidden},
		{&Request{Op: OpReleaseTicket, RID: doc.ID, Ticket: &one, Scope: jobs}, CodeForbidden},
		// The repeat of a keyed create of type job, by a caller granted doc only.
		{&Request{Op: OpCreate, Type: "job", Data: json.RawMessage(`1`), Key: "k1", Scope: []string{"doc"}}, CodeForbidden},
	} {
		seq := h.seq
		out := h.run(tc.req)
		if out.Err == nil || out.Err.Code != tc.want || h.seq != seq {
			t.Errorf("%s %s with scope %q: %+v, want %s and no effect", tc.req.Op, tc.req.RID, tc.req.Scope, out.Err, tc.want)
		}
	}
	if r := h.ok(&Request{Op: OpUpdate, RID: job.ID, Data: json.RawMessage(`5`), Scope: jobs}).Reply.Resource; r.Version != 2 {
		t.Fatalf("update within the scope: version %d, want 2", r.Version)
	}
	h.ok(&Request{Op: OpDelete, RID: job.ID, Key: "del", Scope: jobs})
	// A deleted rid has no type left: not_found, as without a scope.
	if out := h.run(&Request{Op: OpUpdate, RID: job.ID, Data: json.RawMessage(`6`), Scope: []string{"doc"}}); out.Err == nil || out.Err.Code != CodeNotFound {
		t.Fatalf("update of a deleted rid with another scope: %v, want not_found", out.Err)
	}
}
