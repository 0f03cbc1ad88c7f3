package node

import (
	"encoding/json"
	"testing"
)

// A subscription opened for a caller whose role grants some types only never delivers an
// event of another type: not live from the hub, not in a catch-up, not in a resync set;
// an unrestricted subscription beside it gets everything.
func TestSubscriptionScopeFiltersEvents(t *testing.T) {
	m, _ := newFanoutManager(t)
	m.groups[1] = true
	ss := newSubSession(m, make(wakeChan, 1))
	scoped := func(id string, f filter) *subscription {
		s := newSubscription(ss, id, f, subBuffer)
		s.scope = []string{"even"}
		if err := ss.add(s); err != nil {
			t.Fatal(err)
		}
		if _, err := m.open(t.Context(), s, nil); err != nil {
			t.Fatal(err)
		}
		s.release()
		return s
	}
	oddRID := puts(1, 1)[0].Effect.RID
	server := scoped("server", filter{kind: filterServer, group: 1})
	scoped("odd-rid", filter{kind: filterRID, group: 1, rid: oddRID})
	openSub(t, m, ss, "all", filter{kind: filterServer, group: 1}, nil)

	m.publish(1, puts(1, 6))
	counts := map[string][]uint64{}
	for _, f := range decodeFrames(t, ss.frames(nil, 100)) {
		counts[f.Sub] = append(counts[f.Sub], f.Seq)
		if f.Sub != "all" && f.Resource != nil && f.Resource.Type != "even" {
			t.Fatalf("subscription %s delivered a %q event: %+v", f.Sub, f.Resource.Type, f)
		}
	}
	if len(counts["server"]) != 3 || len(counts["odd-rid"]) != 0 || len(counts["all"]) != 6 {
		t.Fatalf("live events by subscription: %v; want seqs 2, 4, 6 for the scoped server subscription, none for the odd rid, all six unscoped", counts)
	}

	// A catch-up (entries read from a copy's log) is filtered the same way.
	sg := server.groups[0]
	var views []entryView
	for _, a := range puts(7, 10) {
		views = append(views, viewOf(&a))
	}
	if !sg.process(views) {
		t.Fatal("the scoped subscription ended in its catch-up")
	}
	// And so is a resync set.
	odd, _ := json.Marshal(puts(11, 11)[0].Effect.Resource)
	even, _ := json.Marshal(puts(12, 12)[0].Effect.Resource)
	sg.pushResync(position{Epoch: 1, Seq: 12}, []json.RawMessage{odd, even, json.RawMessage(`{"id":"x"}`)})
	var seqs []uint64
	var resync []json.RawMessage
	for _, f := range decodeFrames(t, ss.frames(nil, 100)) {
		if f.Sub != "server" {
			continue
		}
		if f.Event == "resync" {
			resync = append(resync, f.Res...)
			continue
		}
		seqs = append(seqs, f.Seq)
		if f.Resource == nil || f.Resource.Type != "even" {
			t.Fatalf("catch-up delivered %+v to the scoped subscription", f)
		}
	}
	if len(seqs) != 2 || seqs[0] != 8 || seqs[1] != 10 {
		t.Fatalf("catch-up events %v, want seqs 8 and 10", seqs)
	}
	if len(resync) != 1 || string(resync[0]) != string(even) {
		t.Fatalf("resync set %s, want only the even resource", resync)
	}
}
