package node

import (
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// A token made at any location resolves at every node, with its role as its own location
// defines it; a newer directory of that location that no longer holds it revokes it here,
// and an older one changes nothing.
func TestTokensOfEveryLocationResolve(t *testing.T) {
	b := &tokenBook{own: "loc1"}
	role := func(types ...string) command.Role {
		return command.Role{Name: "app", Grants: []command.Grant{{Types: types, Ops: []string{command.KindRead}}}}
	}
	tok := func(s string) command.TokenInfo { return command.TokenInfo{Hash: command.HashToken(s), Role: "app"} }
	b.update("loc2", &command.Directory{Index: 5, Roles: []command.Role{role("order")}, Tokens: []command.TokenInfo{tok("sbt_two")}})
	b.update("loc1", &command.Directory{Index: 9, Roles: []command.Role{role("job")}, Tokens: []command.TokenInfo{tok("sbt_one")}})
	book, changed := b.current()
	for token, want := range map[string]string{"sbt_one": "job", "sbt_two": "order"} {
		_, r, ok := book.Lookup(token, 0)
		if !ok || r == nil || r.Grants[0].Types[0] != want {
			t.Fatalf("token %s: role %+v ok %v; want role app of its own location, granting %s", token, r, ok, want)
		}
	}
	if r := book.Role("app"); r == nil || r.Grants[0].Types[0] != "job" {
		t.Fatalf("Role(app) = %+v, want the own location's", r)
	}

	b.update("loc2", &command.Directory{Index: 4, Roles: []command.Role{role("order")}}) // older: ignored
	if book2, _ := b.current(); book2 != book {
		t.Fatal("an older directory of loc2 changed the book")
	}
	b.update("loc2", &command.Directory{Index: 6, Roles: []command.Role{role("order")}}) // sbt_two revoked
	select {
	case <-changed:
	default:
		t.Fatal("the revocation at loc2 did not wake the API layer")
	}
	book, _ = b.current()
	if _, _, ok := book.Lookup("sbt_two", 0); ok {
		t.Fatal("a token revoked at loc2 still resolves")
	}
	if _, _, ok := book.Lookup("sbt_one", 0); !ok {
		t.Fatal("loc1's token stopped resolving")
	}
}
