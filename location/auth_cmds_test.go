package location

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// Roles and token hashes go through the FSM like any command: refused ones change nothing,
// they survive a snapshot, reach the directory nodes receive, and no token itself is ever
// in the log, the snapshot or the directory.
func TestFSMRolesAndTokens(t *testing.T) {
	f, idx := buildFSM(t)
	apply := func(cmd dirCommand) error {
		t.Helper()
		err := applyAt(t, f, idx, cmd)
		idx++
		return err
	}
	reader := command.Role{Name: "reader", Grants: []command.Grant{{Types: []string{"job"}, Ops: []string{command.KindRead}}}}
	tokA, tokB, tokC := "sbt_reader-token", "sbt_admin-token", "sbt_second-reader"
	ok := []dirCommand{
		createRole{Role: reader},
		createToken{Token: command.TokenInfo{Hash: command.HashToken(tokA), Role: "reader"}},
		createToken{Token: command.TokenInfo{Hash: command.HashToken(tokB), Role: command.AdminRole, ExpiresMs: 5000}},
		createToken{Token: command.TokenInfo{Hash: command.HashToken(tokC), Role: "reader"}},
	}
	for _, c := range ok {
		if err := apply(c); err != nil {
			t.Fatalf("%s: %v", c.kind(), err)
		}
	}
	for _, c := range []dirCommand{
		createRole{Role: command.Role{Name: command.AdminRole, Grants: reader.Grants}},
		createRole{Role: command.Role{Name: "empty"}},
		createToken{Token: command.TokenInfo{Hash: command.HashToken("x"), Role: "nobody"}},
		createToken{Token: command.TokenInfo{Hash: "not-a-hash", Role: "reader"}},
		createToken{Token: command.TokenInfo{Hash: command.HashToken(tokA), Role: "reader"}},
		revokeToken{Hash: command.HashToken("never-made")},
		deleteRole{Name: "nobody"},
	} {
		before := snapshotBytes(t, f)
		if err := apply(c); err == nil {
			t.Fatalf("%s %+v accepted", c.kind(), c)
		}
		var sf, sb snapshotFile
		_ = json.Unmarshal(before, &sb)
		_ = json.Unmarshal(snapshotBytes(t, f), &sf)
		sf.Index, sb.Index = 0, 0
		if !reflect.DeepEqual(sf, sb) {
			t.Fatalf("refused %s changed the directory", c.kind())
		}
	}

	st, _ := f.view()
	d := st.directory(func(nodeRecord) (string, uint64) { return command.NodeUp, 0 })
	book := command.NewBook(d.Roles, d.Tokens)
	if _, role, ok := book.Lookup(tokA, 0); !ok || role.Name != "reader" {
		t.Fatalf("directory book: reader token %v %v", role, ok)
	}
	if _, role, ok := book.Lookup(tokB, 4999); !ok || role != nil {
		t.Fatalf("directory book: admin token %v %v", role, ok)
	}
	if _, _, ok := book.Lookup(tokB, 5000); ok {
		t.Fatal("directory book: an expired admin token is accepted")
	}
	for _, where := range map[string][]byte{"snapshot": snapshotBytes(t, f), "directory": mustJSON(t, d)} {
		for _, tok := range []string{tokA, tokB, tokC} {
			if bytes.Contains(where, []byte(tok)) {
				t.Fatalf("a token is stored in clear: %s", where)
			}
		}
	}

	// Snapshot and restore keep roles and tokens.
	snap, _ := f.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("restored roles and tokens differ")
	}

	// Revoking one token leaves the other; deleting the role takes its tokens with it.
	if err := apply(revokeToken{Hash: command.HashToken(tokA)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.token(command.HashToken(tokA)); ok {
		t.Fatal("revoked token still in the directory")
	}
	if _, ok := f.token(command.HashToken(tokC)); !ok {
		t.Fatal("revoking one token removed another")
	}
	if err := apply(deleteRole{Name: "reader"}); err != nil {
		t.Fatal(err)
	}
	st, _ = f.view()
	if len(st.Roles) != 0 || len(st.Tokens) != 1 || st.Tokens[command.HashToken(tokB)].Role != command.AdminRole {
		t.Fatalf("after deleteRole: roles %v tokens %v, want only the admin token", st.Roles, st.Tokens)
	}

	for _, c := range []dirCommand{createRole{Role: reader}, deleteRole{Name: "r"},
		createToken{Token: command.TokenInfo{Hash: "h", Role: "r", ExpiresMs: 3}}, revokeToken{Hash: "h"}} {
		data, _ := encodeCommand(c)
		got, err := decodeCommand(data)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %s: %+v %v", data, got, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "hash") {
		t.Fatalf("directory without token hashes: %s", b)
	}
	return b
}

// FuzzDirCommand feeds arbitrary raft entries to the directory: decoding never panics, a
// command that decodes applies or is refused, and a refused one leaves the directory
// exactly as it was (roles and tokens included).
func FuzzDirCommand(f *testing.F) {
	reader := command.Role{Name: "reader", Grants: []command.Grant{{Types: []string{"job*"}, Ops: []string{command.KindRead}}}}
	for _, c := range []dirCommand{
		createRole{Role: reader}, deleteRole{Name: "reader"},
		createToken{Token: command.TokenInfo{Hash: command.HashToken("t"), Role: "reader", ExpiresMs: 9}},
		createToken{Token: command.TokenInfo{Hash: command.HashToken("a"), Role: command.AdminRole}},
		revokeToken{Hash: command.HashToken("t")}, join(5), removeNode{Node: 3},
		dropLearner{Server: 1, Node: 3, Abort: &command.RegisterAbort{Bound: command.BoundRegisterHoldBytes, Limit: 1, Held: 2}},
		beginPromotion{Server: 1, Epoch: 2, From: 1, Reason: command.ReasonDiskFault, SuspectedMs: 1},
		choosePromotion{Server: 1, Epoch: 2, Main: 2}, activate{Server: 1, Version: 3, AtMs: 5},
	} {
		b, _ := encodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"createRole","body":{"role":{"name":"x","grants":[{"types":["*"],"ops":["read"]},null]}}}`))
	f.Add([]byte(`{"kind":"createToken","body":{"token":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, idx := buildFSM(t)
		if err := applyAt(t, fs, idx, createRole{Role: reader}); err != nil {
			t.Fatal(err)
		}
		idx++
		if err := applyAt(t, fs, idx, createToken{Token: command.TokenInfo{Hash: command.HashToken("t"), Role: "reader"}}); err != nil {
			t.Fatal(err)
		}
		idx++
		cmd, err := decodeCommand(data)
		if err != nil {
			return
		}
		st, _ := fs.view()
		before, _ := json.Marshal(st.snapshotFile())
		if err := cmd.applyTo(st); err != nil {
			after, _ := json.Marshal(st.snapshotFile())
			if !bytes.Equal(before, after) {
				t.Fatalf("refused %s changed the directory:\n%s\n%s", cmd.kind(), before, after)
			}
			return
		}
		d := st.directory(func(nodeRecord) (string, uint64) { return command.NodeUp, 0 })
		for _, r := range d.Roles {
			if err := command.ValidateRole(r.Name, r.Grants); err != nil {
				t.Fatalf("the directory holds an invalid role after %s: %v", cmd.kind(), err)
			}
		}
		book := command.NewBook(d.Roles, d.Tokens)
		if _, role, ok := book.Lookup("t", 0); ok && role == nil {
			t.Fatalf("after %s the reader token resolves as admin", cmd.kind())
		}
	})
}
