package store

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

func testStoreTruncate(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 10), CommitSeq: 4})

	storeWrite(t, gs, &Batch{Truncate: 7})
	if m := storeMeta(t, gs); m.LastSeq != 6 || m.LastEpoch != 1 || m.CommitSeq != 4 {
		t.Errorf("meta after truncating at 7 = %+v, want LastSeq 6", m)
	}
	if got := storeSeqs(storeReadEntries(t, gs, 1, 10, 0)); got != "1:1 1:2 1:3 1:4 1:5 1:6" {
		t.Errorf("log after truncating at 7 = %q", got)
	}

	// The usual follower step: drop a divergent suffix and append the main's entries.
	storeWrite(t, gs, &Batch{Epoch: 2, Truncate: 5, Append: storeEntries(2, 5, 3)})
	if got := storeReadEntries(t, gs, 5, 7, 0); !reflect.DeepEqual(got, storeEntries(2, 5, 3)) {
		t.Errorf("entries 5..7 after replacing the suffix = %v, want epoch-2 entries", got)
	}
	if m := storeMeta(t, gs); m.LastSeq != 7 || m.LastEpoch != 2 || m.Epoch != 2 {
		t.Errorf("meta after replacing the suffix = %+v", m)
	}

	// Truncating past the end removes nothing.
	storeWrite(t, gs, &Batch{Truncate: 8})
	if m := storeMeta(t, gs); m.LastSeq != 7 {
		t.Errorf("truncating at LastSeq+1 changed LastSeq to %d", m.LastSeq)
	}

	// Committed entries are never truncated.
	before := storeStateOf(t, gs)
	for _, at := range []uint64{4, 3, 1} {
		err := gs.Write(&Batch{Truncate: at})
		if err == nil || !strings.Contains(err.Error(), "at or below commit seq 4") {
			t.Errorf("truncate at %d with commit seq 4: err %v, want a refusal naming commit seq 4", at, err)
		}
	}
	if after := storeStateOf(t, gs); !reflect.DeepEqual(before, after) {
		t.Errorf("refused truncations changed the group:\nbefore %+v\nafter  %+v", before, after)
	}
}

func testStoreEpochHistory(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	check := func(step string, lastEpoch, lastSeq, epoch uint64, history ...uint64) {
		t.Helper()
		m := storeMeta(t, gs)
		var want []sibling.EpochStart
		for i := 0; i < len(history); i += 2 {
			want = append(want, sibling.EpochStart{Epoch: history[i], FirstSeq: history[i+1]})
		}
		if m.LastEpoch != lastEpoch || m.LastSeq != lastSeq || m.Epoch != epoch || !reflect.DeepEqual(m.EpochHistory, want) {
			t.Errorf("%s: meta = (last %d:%d, epoch %d, history %v), want (last %d:%d, epoch %d, history %v)",
				step, m.LastEpoch, m.LastSeq, m.Epoch, m.EpochHistory, lastEpoch, lastSeq, epoch, want)
		}
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 3)})
	check("epoch 1 at 1..3", 1, 3, 1, 1, 1)
	storeWrite(t, gs, &Batch{Append: storeEntries(3, 4, 2)})
	check("epoch 3 at 4..5", 3, 5, 3, 1, 1, 3, 4)
	// Two epochs in one batch; a same-epoch entry adds nothing.
	storeWrite(t, gs, &Batch{Append: append(storeEntries(3, 6, 1), storeEntries(5, 7, 2)...)})
	check("epochs 3 and 5 in one batch", 5, 8, 5, 1, 1, 3, 4, 5, 7)
	storeWrite(t, gs, &Batch{Truncate: 7})
	check("truncate at 7 drops (5,7)", 3, 6, 5, 1, 1, 3, 4)
	storeWrite(t, gs, &Batch{Truncate: 5})
	check("truncate at 5 keeps (3,4)", 3, 4, 5, 1, 1, 3, 4)
	storeWrite(t, gs, &Batch{Truncate: 4})
	check("truncate at 4 drops (3,4)", 1, 3, 5, 1, 1)
	storeWrite(t, gs, &Batch{Append: storeEntries(4, 4, 1)})
	check("epoch 4 at 4", 4, 4, 5, 1, 1, 4, 4)
	storeWrite(t, gs, &Batch{Truncate: 1})
	check("truncate the whole log", 0, 0, 5)
}

func testStoreEpochNeverDecreases(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	steps := []struct {
		b    Batch
		want uint64
	}{
		{Batch{Epoch: 5}, 5},
		{Batch{Epoch: 3}, 5},
		{Batch{Append: storeEntries(2, 1, 2)}, 5}, // old entries keep their epoch; the copy's stays
		{Batch{Append: storeEntries(7, 3, 1)}, 7}, // an entry of a newer epoch raises it
		{Batch{Truncate: 3}, 7},                   // and truncating that entry does not lower it
		{Batch{Epoch: 6, Append: storeEntries(6, 3, 1)}, 7},
	}
	for i, st := range steps {
		storeWrite(t, gs, &st.b)
		if m := storeMeta(t, gs); m.Epoch != st.want {
			t.Errorf("step %d (%+v): Epoch = %d, want %d", i, st.b, m.Epoch, st.want)
		}
	}
}

// testStoreInvalidBatches writes, to a group with log 1..5 (epoch 2), commit 3 and applied
// 2, batches that each mix valid parts with one invalid part, and checks that each is
// refused with a message naming the problem and that the group is exactly as before.
func testStoreInvalidBatches(t *testing.T, s Store) {
	gs := storeGroup(t, s, 3)
	dd := &command.DedupeRecord{Key: "k1", Hash: "h", Op: command.OpCreate, Seq: 1, At: storeTestAt}
	first := storePut(1, "3-A", "a", 1)
	first.Effect.Dedupe = dd
	storeWrite(t, gs, &Batch{Epoch: 2, Append: storeEntries(2, 1, 5), CommitSeq: 3,
		Apply: []AppliedEffect{first, storePut(2, "3-B", "a", 1)}})
	probes := []string{"3-A", "3-B", "3-C", "k1", "k2"}
	before := storeStateOf(t, gs, probes...)

	put3 := storePut(3, "3-C", "a", 1)
	withKey := func(a AppliedEffect, key string) AppliedEffect {
		a.Effect.Dedupe = &command.DedupeRecord{Key: key, At: storeTestAt}
		return a
	}
	wrongID := storePut(3, "3-C", "a", 1)
	wrongID.Effect.Resource.ID = "3-D"
	kind := func(seq uint64, k command.EffectKind, rid string) AppliedEffect {
		return AppliedEffect{Seq: seq, Effect: command.Effect{Kind: k, RID: rid}}
	}

	cases := []struct {
		name string
		b    *Batch
		want string
	}{
		{"nil batch", nil, "group 3: nil batch"},
		{"gap after last", &Batch{Epoch: 9, Append: storeEntries(2, 7, 1)}, "group 3: append seq 7 does not follow last seq 5"},
		{"overlap with last", &Batch{Append: storeEntries(2, 5, 2)}, "append seq 5 does not follow last seq 5"},
		{"gap inside batch", &Batch{Append: []sibling.Entry{storeEntries(2, 6, 1)[0], storeEntries(2, 8, 1)[0]}},
			"append seq 8 does not follow seq 6 of the same batch"},
		{"epoch 0", &Batch{Append: storeEntries(0, 6, 1)}, "append seq 6 has epoch 0"},
		{"epoch goes down", &Batch{Append: append(storeEntries(4, 6, 1), storeEntries(3, 7, 1)...)},
			"append seq 7 has epoch 3, below epoch 4"},
		{"old epoch after last", &Batch{Append: storeEntries(1, 6, 1)}, "append seq 6 has epoch 1, below epoch 2"},
		{"truncate at commit", &Batch{Epoch: 9, Truncate: 3, Append: storeEntries(3, 3, 1)},
			"truncate at seq 3 is at or below commit seq 3"},
		{"commit beyond last", &Batch{Append: storeEntries(2, 6, 1), CommitSeq: 7}, "commit seq 7 is beyond last seq 6"},
		{"commit beyond truncated last", &Batch{Truncate: 5, CommitSeq: 5}, "commit seq 5 is beyond last seq 4"},
		{"apply skips a seq", &Batch{Apply: []AppliedEffect{storePut(4, "3-C", "a", 1)}},
			"apply seq 4 does not follow applied seq 2"},
		{"apply repeats a seq", &Batch{Apply: []AppliedEffect{storePut(2, "3-C", "a", 1)}},
			"apply seq 2 does not follow applied seq 2"},
		{"apply beyond commit", &Batch{Append: storeEntries(2, 6, 1), Apply: []AppliedEffect{put3, storeNoop(4)}},
			"apply seq 4 is beyond commit seq 3"},
		{"apply beyond the batch's commit", &Batch{CommitSeq: 4, Apply: []AppliedEffect{put3, storeNoop(4), storeNoop(5)}},
			"apply seq 5 is beyond commit seq 4"},
		{"unknown kind after a valid put", &Batch{CommitSeq: 4, Apply: []AppliedEffect{put3, kind(4, 0, "")}},
			"apply seq 4: unknown effect kind 0"},
		{"put without resource", &Batch{Apply: []AppliedEffect{kind(3, command.EffectPut, "3-C")}},
			`apply seq 3: put effect needs a rid and a resource (rid "3-C", resource set: false)`},
		{"put of another rid", &Batch{Apply: []AppliedEffect{wrongID}}, `put effect for rid "3-C" carries resource "3-D"`},
		{"delete without rid", &Batch{Apply: []AppliedEffect{kind(3, command.EffectDelete, "")}},
			"apply seq 3: delete effect has no rid"},
		{"dedupe key too long", &Batch{Apply: []AppliedEffect{withKey(put3, strings.Repeat("k", 32769))}},
			"apply seq 3: dedupe key of 32769 bytes is longer than 32768"},
		{"dedupe without key", &Batch{Apply: []AppliedEffect{withKey(put3, "")}},
			"apply seq 3: dedupe record has an empty key"},
	}
	for _, c := range cases {
		err := gs.Write(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Write err = %v, want one containing %q", c.name, err, c.want)
		}
		if after := storeStateOf(t, gs, probes...); !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: refused batch changed the group:\nbefore %+v\nafter  %+v", c.name, before, after)
		}
	}
	// The same group still takes a valid batch afterwards.
	storeWrite(t, gs, &Batch{Append: storeEntries(2, 6, 1), CommitSeq: 6, Apply: []AppliedEffect{withKey(put3, "k2")}})
	if m := storeMeta(t, gs); m.Applied != 3 || m.CommitSeq != 6 {
		t.Errorf("meta after a valid batch = %+v", m)
	}
}

func testStoreGroupsAndDrop(t *testing.T, s Store) {
	groups := func() []command.ServerID {
		t.Helper()
		gs, err := s.Groups()
		if err != nil {
			t.Fatalf("Groups: %v", err)
		}
		return gs
	}
	if gs := groups(); len(gs) != 0 {
		t.Errorf("Groups of a new store = %v", gs)
	}
	if _, err := s.Group(0); err == nil {
		t.Errorf("Group(0) succeeded")
	}
	for _, g := range []command.ServerID{12, 3, 2, 65535} {
		storeGroup(t, s, g)
	}
	if gs, want := groups(), []command.ServerID{2, 3, 12, 65535}; !slices.Equal(gs, want) {
		t.Errorf("Groups = %v, want %v", gs, want)
	}
	g3 := storeGroup(t, s, 3)
	old := storeMeta(t, g3)
	storeWrite(t, g3, &Batch{Append: storeEntries(1, 1, 2), CommitSeq: 1, Apply: []AppliedEffect{storePut(1, "3-A", "a", 1)}})

	if err := s.DropGroup(3); err != nil {
		t.Fatalf("DropGroup(3): %v", err)
	}
	if err := s.DropGroup(99); err != nil {
		t.Errorf("DropGroup of a group never held: %v", err)
	}
	if gs, want := groups(), []command.ServerID{2, 12, 65535}; !slices.Equal(gs, want) {
		t.Errorf("Groups after dropping 3 = %v, want %v", gs, want)
	}
	if _, err := g3.Meta(); !errors.Is(err, ErrNoCopy) {
		t.Errorf("Meta through a handle of a dropped group: err %v, want ErrNoCopy", err)
	}
	if err := g3.Write(&Batch{Append: storeEntries(1, 3, 1)}); !errors.Is(err, ErrNoCopy) {
		t.Errorf("Write through a handle of a dropped group: err %v, want ErrNoCopy", err)
	}
	// A new copy of the group starts empty, with a new identity.
	fresh := storeMeta(t, storeGroup(t, s, 3))
	if fresh.LastSeq != 0 || fresh.CommitSeq != 0 || fresh.Applied != 0 || fresh.CopyID == old.CopyID {
		t.Errorf("meta of re-created group 3 = %+v, want empty with a CopyID other than %q", fresh, old.CopyID)
	}
	if res, ts, err := storeGroup(t, s, 3).Resource("3-A"); res != nil || ts != nil || err != nil {
		t.Errorf("re-created group 3 still has 3-A: %v %v %v", res, ts, err)
	}
}
