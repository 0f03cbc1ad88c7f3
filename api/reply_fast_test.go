package api

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The fast path writes the same JSON object as json.Marshal, for every reply shape it takes.
func TestFastReplyMatchesJSON(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	datas := []string{`{"state":"queued"}`, `"x<y>&z"`, `[1, 2, {"a": null}]`, "{\n \"k\" : \"\\u00e9\\n\"\n}", `12.5e3`, ``}
	times := []time.Time{{}, time.Date(2026, 12, 6, 3, 4, 5, 123456789, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}
	for i := range 500 {
		w := &wireReply{OK: true, ID: rawID(ptr("req-" + string(rune('a'+i%26))))}
		if rng.IntN(4) > 0 {
			w.Resource = &command.Resource{ID: "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4", Type: []string{"job", "a_b-c", "t\"q", "é"}[rng.IntN(4)],
				Version: rng.Uint64N(1 << 40), Data: rawData(datas[rng.IntN(len(datas))]),
				Created: times[rng.IntN(len(times))], Updated: times[rng.IntN(len(times))]}
		}
		if rng.IntN(2) == 0 {
			w.Epoch = ptr(rng.Uint64())
		}
		if rng.IntN(2) == 0 {
			w.Seq = ptr(rng.Uint64())
		}
		w.Duplicate = rng.IntN(3) == 0
		if rng.IntN(5) == 0 {
			w.ID = nil
		}
		got, err := encodeReply(w)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		var g, wv any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("fast reply is not JSON: %v\n%s", err, got)
		}
		if err := json.Unmarshal(want, &wv); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, wv) {
			t.Fatalf("fast reply differs:\n got %s\nwant %s", got, want)
		}
	}
	// Other shapes are left to json.Marshal.
	for _, w := range []*wireReply{{Error: command.Errorf(command.CodeNotFound, "x")}, {OK: true, Next: "n"},
		{OK: true, Token: ptr("t")}, {OK: true, Ticket: &command.TicketInfo{Fence: 1}}} {
		if _, ok := appendFastReply(nil, w); ok {
			t.Errorf("fast path took %+v", w)
		}
	}
}

// rawData is s as resource data; "" stands for no data (nil), which encodes as null.
func rawData(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}
