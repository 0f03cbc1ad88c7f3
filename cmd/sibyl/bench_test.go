package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Each write's data is the JSON json.Marshal gives for benchValue, built without it.
func TestBenchDataMatchesJSON(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		size int
	}{{0, 0}, {1, 1}, {1234567, 256}, {^uint64(0), 3}} {
		pad := strings.Repeat("x", c.size)
		want, _ := json.Marshal(benchValue{N: c.n, Pad: pad})
		if got := appendBenchData([]byte("junk")[:0], c.n, pad); string(got) != string(want) {
			t.Errorf("n %d size %d: %s, json.Marshal gives %s", c.n, c.size, got, want)
		}
	}
}
