package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// An event never precedes the reply to its subscribe, even when the write that makes it
// is pipelined right behind the subscribe; each subscription's events carry its id, in
// order, once.
func TestEventsFollowTheirSubscribeReply(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	const n = 20
	for i := 0; i < n; i++ {
		ws.send(`{"id":"s` + strconv.Itoa(i) + `","op":"subscribe","type":"doc"}`)
		ws.send(`{"id":"c` + strconv.Itoa(i) + `","op":"create","type":"doc","data":` + strconv.Itoa(i) + `}`)
	}
	replied := map[string]bool{}
	seqs := map[string][]uint64{}
	want := n * (n + 1) / 2 // subscription i sees creates i..n-1
	got := 0
	for replies := 0; replies < 2*n || got < want; {
		r := ws.recv()
		if raw, ok := r.Fields["sub"]; ok {
			var sub string
			json.Unmarshal(raw, &sub)
			if !replied[sub] {
				t.Fatalf("event of %s before the reply to its subscribe: %v", sub, r.Fields)
			}
			seqs[sub] = append(seqs[sub], r.Reply.Seq)
			got++
			continue
		}
		replies++
		var id string
		json.Unmarshal(r.ID, &id)
		if !r.OK {
			t.Fatalf("reply %s failed: %+v", id, r.Error)
		}
		if strings.HasPrefix(id, "s") {
			if _, ok := r.Fields["token"]; !ok {
				t.Fatalf("subscribe reply without a token: %v", r.Fields)
			}
			replied[id] = true
		}
	}
	for i := 0; i < n; i++ {
		s := seqs["s"+strconv.Itoa(i)]
		if len(s) != n-i {
			t.Fatalf("subscription s%d got %d events, want %d", i, len(s), n-i)
		}
		for j := 1; j < len(s); j++ {
			if s[j] != s[j-1]+1 {
				t.Fatalf("subscription s%d: seqs %v are not the creates in order", i, s)
			}
		}
	}
	resp, err := http.Get(h.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "sibyl_event_frames_total "+strconv.Itoa(want)) {
		t.Fatalf("metrics do not count %d event frames:\n%s", want, body)
	}
}

// After unsubscribe's reply, no event of that subscription comes.
func TestNoEventsAfterUnsubscribe(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	mustOK(t, ws.roundTrip(`{"id":"s","op":"subscribe","type":"doc"}`), "s")
	mustOK(t, ws.roundTrip(`{"id":"u","op":"unsubscribe","sub":"s"}`), "u")
	ws.createOne("c")
	mustOK(t, ws.roundTrip(`{"id":"l","op":"list"}`), "l") // the create's event would have come before this
	mustFail(t, ws.roundTrip(`{"id":"u2","op":"unsubscribe","sub":"s"}`), "not_found", `"u2"`)
}
