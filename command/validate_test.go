package command

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateRequest(t *testing.T) {
	const rid = "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4"
	data := json.RawMessage(`{}`)
	tests := []struct {
		name string
		req  Request
		msg  string // "" when valid
	}{
		{"create", Request{Op: OpCreate, Type: "t", Data: data}, ""},
		{"create type of 64", Request{Op: OpCreate, Type: strings.Repeat("x", 64), Data: data}, ""},
		{"create server 65535", Request{Op: OpCreate, Type: "t", Data: data, Server: i64(65535)}, ""},
		{"create server 65536", Request{Op: OpCreate, Type: "t", Data: data, Server: i64(65536)}, "server 65536 is not in 1..65535"},
		{"create server -1", Request{Op: OpCreate, Type: "t", Data: data, Server: i64(-1)}, "server -1 is not in 1..65535"},
		{"create type unicode", Request{Op: OpCreate, Type: "tÿ", Data: data}, "characters outside"},
		{"create invalid-UTF-8 key", Request{Op: OpCreate, Type: "t", Data: data, Key: "\xff"}, "not valid UTF-8"},
		{"get", Request{Op: OpGet, RID: rid}, ""},
		{"get sibling", Request{Op: OpGet, RID: rid, Consistency: SiblingRead}, ""},
		{"get linearizable", Request{Op: OpGet, RID: rid, Consistency: Linearizable}, ""},
		{"get strong", Request{Op: OpGet, RID: rid, Consistency: "strong"}, `consistency "strong"`},
		{"get without rid", Request{Op: OpGet}, "rid is missing"},
		{"get rid with leading zero", Request{Op: OpGet, RID: "0" + rid}, "not canonical"},
		{"update", Request{Op: OpUpdate, RID: rid, Data: data, IfVersion: u64(1), Ticket: u64(4), Key: "k"}, ""},
		{"patch", Request{Op: OpPatch, RID: rid, Patch: json.RawMessage(`null`)}, ""},
		{"delete ifVersion 0", Request{Op: OpDelete, RID: rid, IfVersion: u64(0)}, "ifVersion 0"},
		{"list empty", Request{Op: OpList}, ""},
		{"list all fields", Request{Op: OpList, Type: "t", Server: i64(3), After: rid, Limit: 5000}, ""},
		{"list bad type", Request{Op: OpList, Type: "a/b"}, `type "a/b"`},
		{"list server 0", Request{Op: OpList, Server: i64(0)}, "server 0"},
		{"list bad after", Request{Op: OpList, After: "3-x"}, `after: rid "3-x"`},
		{"subscribe rid", Request{Op: OpSubscribe, RID: rid}, ""},
		{"subscribe server", Request{Op: OpSubscribe, Server: i64(9)}, ""},
		{"subscribe type", Request{Op: OpSubscribe, Type: "t"}, ""},
		{"subscribe nothing", Request{Op: OpSubscribe}, "exactly one of rid, server, type (got 0)"},
		{"subscribe two", Request{Op: OpSubscribe, RID: rid, Type: "t"}, "(got 2)"},
		{"subscribe bad server", Request{Op: OpSubscribe, Server: i64(70000)}, "server 70000"},
		{"subscribe bad type", Request{Op: OpSubscribe, Type: "a b"}, `type "a b"`},
		{"unsubscribe", Request{Op: OpUnsubscribe, Sub: "s1"}, ""},
		{"unsubscribe without sub", Request{Op: OpUnsubscribe}, "needs sub"},
		{"acquire", Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(1000)}, ""},
		{"acquire without ttl", Request{Op: OpAcquireTicket, RID: rid}, "ttlMs is missing"},
		{"acquire ttl 0", Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(0)}, "ttlMs 0 is not positive"},
		{"renew", Request{Op: OpRenewTicket, RID: rid, Ticket: u64(1), TTLMs: i64(10)}, ""},
		{"renew without ticket", Request{Op: OpRenewTicket, RID: rid, TTLMs: i64(10)}, "ticket is missing"},
		{"renew ttl -5", Request{Op: OpRenewTicket, RID: rid, Ticket: u64(1), TTLMs: i64(-5)}, "ttlMs -5"},
		{"release", Request{Op: OpReleaseTicket, RID: rid, Ticket: u64(1)}, ""},
		{"release without ticket", Request{Op: OpReleaseTicket, RID: rid}, "ticket is missing"},
		{"status", Request{Op: OpStatus}, ""},
		{"hello", Request{Op: OpHello, Token: "x"}, ""},
		{"promote", Request{Op: OpPromote, Server: i64(3), Node: i64(4)}, ""},
		{"promote without node", Request{Op: OpPromote, Server: i64(3)}, "node is missing"},
		{"register node 0", Request{Op: OpRegisterSibling, Server: i64(3), Node: i64(0)}, "node 0"},
		{"drain", Request{Op: OpDrain, Node: i64(2)}, ""},
		{"no op", Request{}, "op is missing"},
		{"unknown op", Request{Op: "Create"}, `unknown op "Create"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRequest(&tt.req)
			switch {
			case tt.msg == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.msg != "" && (err == nil || err.Code != CodeBadRequest || !strings.Contains(err.Message, tt.msg)):
				t.Fatalf("got %v, want bad_request containing %q", err, tt.msg)
			}
		})
	}
}

func TestClampLimit(t *testing.T) {
	for in, want := range map[int]int{-1: 100, 0: 100, 1: 1, 100: 100, 1000: 1000, 1001: 1000, 1 << 40: 1000} {
		if got := ClampLimit(in); got != want {
			t.Errorf("ClampLimit(%d) = %d, want %d", in, got, want)
		}
	}
}
