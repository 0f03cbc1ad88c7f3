package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// Value returns exactly the bytes encoding/json keeps in a json.RawMessage.
func TestValueMatchesRawMessage(t *testing.T) {
	for _, v := range []string{`{"a":[1,"]}\"",{}]}`, `"x\\"`, `"\u00e9"`, `-12.5e3`, `0`, `true`, `null`, `[]`, `[ 1 , 2 ]`, `{ }`} {
		checkValue(t, []byte(`{"v": `+v+` , "w":1}`))
	}
}

// checkValue reads field "v" of frame with Value and checks it against what encoding/json
// keeps in a json.RawMessage.
func checkValue(t *testing.T, frame []byte) {
	t.Helper()
	var want struct{ V json.RawMessage }
	if err := json.Unmarshal(frame, &want); err != nil {
		t.Fatal(err)
	}
	s := New(frame)
	var got []byte
	ok := s.Object(func(k []byte) bool {
		if string(k) == "v" {
			var ok bool
			got, ok = s.Value()
			return ok
		}
		_, ok := s.Uint()
		return ok
	})
	if !ok || string(got) != string(want.V) || !s.End() {
		t.Errorf("%s: value %q ok %v, encoding/json keeps %q", frame, got, ok, want.V)
	}
}

func TestNumbers(t *testing.T) {
	for _, c := range []struct {
		in  string
		u   uint64
		uok bool
		i   int64
		iok bool
	}{
		{"0", 0, true, 0, true}, {"18446744073709551615", 1<<64 - 1, true, 0, false},
		{"-1", 0, false, -1, true}, {"1.0", 0, false, 0, false}, {"1e3", 0, false, 0, false},
		{"9223372036854775808", 1 << 63, true, 0, false}, {`"1"`, 0, false, 0, false}, {"-", 0, false, 0, false},
	} {
		s := New([]byte(c.in))
		u, uok := s.Uint()
		s = New([]byte(c.in))
		i, iok := s.Int()
		if u != c.u || uok != c.uok || i != c.i || iok != c.iok {
			t.Errorf("%s: Uint %d %v, Int %d %v; want %d %v, %d %v", c.in, u, uok, i, iok, c.u, c.uok, c.i, c.iok)
		}
	}
}

func TestStrRefusesWhatNeedsDecoding(t *testing.T) {
	for in, ok := range map[string]bool{`"abc-1_Z"`: true, `""`: true, `"a\"b"`: false, `"é"`: false, "\"\xff\"": false, `x`: false} {
		s := New([]byte(in))
		if _, got := s.Str(); got != ok {
			t.Errorf("%s: ok %v, want %v", in, got, ok)
		}
	}
}

// Strings are read a word at a time up to the first word that needs a look: Str and Value
// must answer as they do byte by byte wherever, around word boundaries, that word begins.
func TestStringsAcrossWords(t *testing.T) {
	specials := map[string]bool{`\"`: false, `\\`: false, `\n`: false, `\u00e9`: false, "é": false, "\x7f": false, "\x7e": true, " ": true, "!": true, "]": true, "}": true}
	for n := 0; n <= 26; n++ {
		for at := 0; at <= n; at++ {
			for sp, plain := range specials {
				str := `"` + strings.Repeat("a", at) + sp + strings.Repeat("b", n-at) + `"`
				s := New([]byte(str))
				if b, ok := s.Str(); ok != plain || (ok && `"`+string(b)+`"` != str) {
					t.Fatalf("Str(%s) = %q, %v; want ok %v", str, b, ok, plain)
				}
				checkValue(t, []byte(`{"v":`+str+`,"w":1}`))
			}
		}
	}
}
