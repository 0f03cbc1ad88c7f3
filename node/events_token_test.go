package node

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

func TestTokenRoundTrip(t *testing.T) {
	f := filter{kind: filterType, typ: "job"}
	cases := []token{
		{Kind: filterServer, Hash: filter{kind: filterServer, group: 3}.hash(), Groups: []groupPos{{Group: 3}}},
		{Kind: filterRID, Hash: 7, Groups: []groupPos{{Group: 65535, Pos: position{Epoch: 1 << 40, Seq: 1<<64 - 1}}}},
		{Kind: filterType, Hash: f.hash()},
		{Kind: filterType, Hash: f.hash(), Groups: []groupPos{
			{Group: 1, Pos: position{Epoch: 2, Seq: 120}}, {Group: 2, Pos: position{Epoch: 1, Seq: 5}},
			{Group: 900, Pos: position{Epoch: 7, Seq: 1}}}},
	}
	for _, tc := range cases {
		s := encodeToken(tc)
		if strings.ContainsAny(s, "+/=") {
			t.Fatalf("token %q is not base64url without padding", s)
		}
		got, err := decodeToken(s)
		if err != nil {
			t.Fatalf("decode %q (of %+v): %v", s, tc, err)
		}
		if got.Kind != tc.Kind || got.Hash != tc.Hash || len(got.Groups) != len(tc.Groups) {
			t.Fatalf("decode %q = %+v, want %+v", s, got, tc)
		}
		for i := range got.Groups {
			if got.Groups[i] != tc.Groups[i] {
				t.Fatalf("decode %q: group %d = %+v, want %+v", s, i, got.Groups[i], tc.Groups[i])
			}
		}
	}
	// Compact: a server token is a dozen characters, a type token grows by bytes per group.
	if s := encodeToken(cases[0]); len(s) > 16 {
		t.Fatalf("server token %q is %d characters", s, len(s))
	}
}

func TestTokenRefusals(t *testing.T) {
	raw := func(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	cases := map[string]string{
		"empty":             "",
		"not base64":        "!!!",
		"short":             raw(1, 2, 0, 0, 0, 0),
		"version":           raw(9, 2, 0, 0, 0, 0, 1, 1, 1, 1),
		"kind":              raw(1, 9, 0, 0, 0, 0, 1, 1, 1, 1),
		"feed kind":         raw(1, byte(filterFeed), 0, 0, 0, 0, 1, 1, 1, 1),
		"two groups in rid": raw(1, 1, 0, 0, 0, 0, 2, 1, 1, 1, 1, 1, 1),
		"zero group delta":  raw(1, 3, 0, 0, 0, 0, 2, 1, 1, 1, 0, 1, 1),
		"group over 65535":  raw(1, 3, 0, 0, 0, 0, 1, 0x80, 0x80, 0x04, 1, 1),
		"epoch without seq": raw(1, 2, 0, 0, 0, 0, 1, 1, 1, 0),
		"seq without epoch": raw(1, 2, 0, 0, 0, 0, 1, 1, 0, 1),
		"trailing bytes":    raw(1, 2, 0, 0, 0, 0, 1, 1, 1, 1, 0),
		"count past input":  raw(1, 3, 0, 0, 0, 0, 100, 1, 1, 1),
		"truncated varint":  raw(1, 2, 0, 0, 0, 0, 1, 1, 0x80),
	}
	for name, s := range cases {
		if tok, err := decodeToken(s); err == nil {
			t.Errorf("%s: decodeToken(%q) = %+v, want an error", name, s, tok)
		}
	}
}

// A token of another filter is refused; so is a one-group token naming another group.
func TestTokenCheck(t *testing.T) {
	server1 := filter{kind: filterServer, group: 1}
	tok := token{Kind: filterServer, Hash: server1.hash(), Groups: []groupPos{{Group: 1}}}
	if err := tok.check(server1); err != nil {
		t.Fatalf("own token refused: %v", err)
	}
	for _, other := range []filter{{kind: filterServer, group: 2}, {kind: filterType, typ: "1"},
		{kind: filterRID, group: 1, rid: "1-01JDQ8T5Z8K3N2M4P6R8S0V2X4"}} {
		if err := tok.check(other); err == nil {
			t.Errorf("token of %s accepted for %s", server1, other)
		}
	}
	forged := token{Kind: filterServer, Hash: server1.hash(), Groups: []groupPos{{Group: 2}}}
	if err := forged.check(server1); err == nil {
		t.Error("server-1 token naming group 2 accepted")
	}
	var none *token
	if p := none.posOf(command.ServerID(1)); p != (position{}) {
		t.Errorf("no token: position %v, want (0,0)", p)
	}
}

// FuzzToken: the decoder never panics, and what it accepts encodes back to the same
// string (a token has one spelling).
func FuzzToken(f *testing.F) {
	f.Add(encodeToken(token{Kind: filterServer, Hash: 1, Groups: []groupPos{{Group: 1, Pos: position{Epoch: 1, Seq: 9}}}}))
	f.Add(encodeToken(token{Kind: filterType, Hash: 2, Groups: []groupPos{{Group: 1, Pos: position{Epoch: 1, Seq: 9}},
		{Group: 4, Pos: position{Epoch: 3, Seq: 1}}}}))
	f.Add("")
	f.Add("AQIAAAAAAQEBAQ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeToken(s)
		if err != nil {
			return
		}
		if again := encodeToken(tok); again != s {
			t.Fatalf("decodeToken(%q) = %+v, which encodes as %q", s, tok, again)
		}
	})
}
