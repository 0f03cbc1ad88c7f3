package command

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// ScanJSON agrees with encoding/json on validity and compactness, and with CheckDepth on
// nesting, for every input the fuzzer finds.
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{
		``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5e`, `1e+9`, `2E-3`, `true`, `tru`, `nulls`, `"a\u00e9\n"`,
		`"\u12"`, `"\x"`, "\"\x01\"", `{"a":[1,2,{"b":null}],"c":"d"}`, `{ "a" : 1 }`, `[1,]`, `{"a":1,}`,
		`{"a"}`, `{1:2}`, `[[[]]]`, `]`, `[}`, `{"a":1}{}`, " [1,\n2]\t", `"é"`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, depth, compact := ScanJSON(b)
		if want := json.Valid(b); valid != want {
			t.Fatalf("ScanJSON(%q) valid %v, json.Valid %v", b, valid, want)
		}
		if !valid {
			return
		}
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			t.Fatal(err)
		}
		if want := bytes.Equal(c.Bytes(), b); compact != want {
			t.Fatalf("ScanJSON(%q) compact %v, json.Compact leaves it unchanged: %v", b, compact, want)
		}
		if depth > 0 && CheckDepth(b, depth) != nil || depth > 0 && CheckDepth(b, depth-1) == nil || depth == 0 && CheckDepth(b, 0) != nil {
			t.Fatalf("ScanJSON(%q) depth %d disagrees with CheckDepth", b, depth)
		}
	})
}

func BenchmarkScanJSON(b *testing.B) {
	data := []byte(`{"n":12345,"s":"` + strings.Repeat("payload ", 32) + `","ok":true,"list":[1,2,3]}`)
	b.Run("ScanJSON", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			ScanJSON(data)
		}
	})
	b.Run("json.Valid+Compact", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var buf bytes.Buffer
		for range b.N {
			json.Valid(data)
			buf.Reset()
			_ = json.Compact(&buf, data)
		}
	})
}

// A string's bytes are read a word at a time until a word holds a byte that needs a look:
// every such byte, at every offset from the word boundary, in strings of every length
// around a word, must be judged as encoding/json judges it.
func TestScanJSONStringsAcrossWords(t *testing.T) {
	specials := []string{`"`, `\"`, `\\`, `\n`, `\u00e9`, `\u12`, `\x`, `\`, "\x00", "\x1f", "\x20", "\x7f", "é", "\xff", "!", "~", "#", "]", "\\/"}
	for n := 0; n <= 26; n++ {
		for at := 0; at <= n; at++ {
			for _, sp := range specials {
				s := strings.Repeat("a", at) + sp + strings.Repeat("b", n-at)
				for _, doc := range []string{`"` + s + `"`, `{"k":"` + s + `","n":1}`, `["` + s + `"]`} {
					b := []byte(doc)
					if valid, _, _ := ScanJSON(b); valid != json.Valid(b) {
						t.Fatalf("ScanJSON(%q) valid %v, json.Valid %v", b, valid, !valid)
					}
				}
			}
		}
	}
}
