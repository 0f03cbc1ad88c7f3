package store

import (
	"flag"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

var logModelSeed = flag.Uint64("store.logseed", 0, "seed of TestDurableLogMatchesTheMemoryStore (0: from the clock)")

// The log of the durable store (entries in layers of seq runs and deleted ranges over
// bbolt) reads exactly as the in-memory store's, through appends, truncations of
// uncommitted suffixes, compactions, flushes at random points, and crashes with a replay.
// So does the committed layer: the entries are real effects (puts and deletes of a few
// rids), applied with ApplyFromLog, so that a boot derives from the log's entries what the
// write applied.
func TestDurableLogMatchesTheMemoryStore(t *testing.T) {
	seed := *logModelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-store.logseed=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	durable := openTestDurable(t, dir, DurableOptions{})
	defer func() { durable.Close() }()
	mem := NewMemStore()
	dg, mg := storeGroup(t, durable, 1), storeGroup(t, mem, 1)

	var last, commit, applied, first uint64 // first: FirstSeq - 1 after the last compaction
	epoch := uint64(1)
	effects := map[uint64]command.Effect{} // the effect of the log's entry at each seq
	for step := range 400 {
		b := &Batch{Epoch: epoch}
		switch r := rng.IntN(100); {
		case r < 8 && last > commit:
			// A new epoch truncates part of the uncommitted suffix.
			epoch++
			b.Epoch = epoch
			b.Truncate = commit + 1 + uint64(rng.IntN(int(last-commit)))
			last = b.Truncate - 1
		case r < 20 && applied > first+1:
			b.Compact = first + 1 + uint64(rng.IntN(int(applied-first)))
			first = b.Compact
		}
		for range rng.IntN(6) {
			last++
			eff := logModelEffect(rng, last)
			data, err := command.EncodeEffect(&eff)
			if err != nil {
				t.Fatal(err)
			}
			effects[last] = eff
			b.Append = append(b.Append, sibling.Entry{Epoch: epoch, Seq: last, Data: data})
		}
		if last > commit && rng.IntN(3) == 0 {
			commit += 1 + uint64(rng.IntN(int(last-commit)))
			b.CommitSeq = commit
			b.ApplyFromLog = rng.IntN(10) > 0
			for applied < commit {
				applied++
				b.Apply = append(b.Apply, AppliedEffect{Epoch: epoch, Seq: applied, Effect: effects[applied]})
			}
		}
		storeWrite(t, mg, b)
		storeWrite(t, dg, b)

		switch r := rng.IntN(100); {
		case r < 10:
			if err := durable.(Durable).Flush(); err != nil {
				t.Fatalf("step %d: flush: %v", step, err)
			}
		case r < 12:
			if err := durable.(*walStore).crash(); err != nil {
				t.Fatalf("step %d: crash: %v", step, err)
			}
			durable = openTestDurable(t, dir, DurableOptions{})
			dg = storeGroup(t, durable, 1)
		}
		if step%10 == 0 || step == 399 {
			compareLogs(t, step, mg, dg, rng)
			if want, got := storeStateOf(t, mg, logModelRIDs...), storeStateOf(t, dg, logModelRIDs...); !reflect.DeepEqual(got.Live, want.Live) ||
				!reflect.DeepEqual(got.Probes, want.Probes) {
				t.Fatalf("step %d: committed layer\n got %+v\nwant %+v", step, got, want)
			}
		}
	}
}

var logModelRIDs = []string{"1-00000000000000000000000001", "1-00000000000000000000000002", "1-00000000000000000000000003", "1-00000000000000000000000004"}

// logModelEffect is a random put or delete of one of logModelRIDs, as entry seq.
func logModelEffect(rng *rand.Rand, seq uint64) command.Effect {
	rid := logModelRIDs[rng.IntN(len(logModelRIDs))]
	if rng.IntN(5) == 0 {
		return command.Effect{Kind: command.EffectDelete, RID: rid, Version: seq, At: storeTestAt}
	}
	return command.Effect{Kind: command.EffectPut, RID: rid, Resource: storeResource(rid, "model", seq), At: storeTestAt}
}

func compareLogs(t *testing.T, step int, mem, durable GroupStore, rng *rand.Rand) {
	t.Helper()
	mm, err := mem.Meta()
	if err != nil {
		t.Fatal(err)
	}
	dm, err := durable.Meta()
	if err != nil {
		t.Fatal(err)
	}
	if mm.FirstSeq != dm.FirstSeq || mm.LastSeq != dm.LastSeq {
		t.Fatalf("step %d: memory store holds %d..%d, durable %d..%d", step, mm.FirstSeq, mm.LastSeq, dm.FirstSeq, dm.LastSeq)
	}
	from := mm.FirstSeq
	if mm.LastSeq > mm.FirstSeq {
		from += uint64(rng.IntN(int(mm.LastSeq - mm.FirstSeq)))
	}
	read := func(gs GroupStore) []sibling.Entry {
		es, err := gs.Entries(from, mm.LastSeq, 0)
		if err != nil {
			t.Fatalf("step %d: entries %d..%d: %v", step, from, mm.LastSeq, err)
		}
		return es
	}
	if want, got := read(mem), read(durable); !reflect.DeepEqual(got, want) {
		t.Fatalf("step %d: entries %d..%d:\n got %v\nwant %v", step, from, mm.LastSeq, got, want)
	}
	// Nothing compacted or truncated is left in the bucket either.
	if want, got := logKeys(t, mem), logKeys(t, durable); !reflect.DeepEqual(got, want) {
		t.Fatalf("step %d: log bucket holds seqs\n got %v\nwant %v", step, got, want)
	}
}

// logKeys lists every seq in the group's log bucket.
func logKeys(t *testing.T, gs GroupStore) []uint64 {
	t.Helper()
	var seqs []uint64
	err := gs.(interface{ shared() *groupStore }).shared().txns.view(func(bk *groupBuckets) error {
		return bk.log.each(nil, func(k, _ []byte) (bool, error) {
			seq, err := logSeq(k)
			seqs = append(seqs, seq)
			return true, err
		})
	})
	if err != nil {
		t.Fatalf("list the log bucket: %v", err)
	}
	return seqs
}

// The memory store holds a batch to its ApplyFromLog promise: an applied effect that is not
// its log entry's is refused, and the batch changes nothing.
func TestMemStoreRefusesAnApplyThatIsNotItsLogEntry(t *testing.T) {
	gs := storeGroup(t, NewMemStore(), 1)
	put := func(seq uint64, version uint64) (sibling.Entry, AppliedEffect) {
		a := AppliedEffect{Epoch: 1, Seq: seq, Effect: command.Effect{Kind: command.EffectPut, RID: logModelRIDs[0],
			Resource: storeResource(logModelRIDs[0], "model", version), At: storeTestAt}}
		data, err := command.EncodeEffect(&a.Effect)
		if err != nil {
			t.Fatal(err)
		}
		return sibling.Entry{Epoch: 1, Seq: seq, Data: data}, a
	}
	e1, a1 := put(1, 1)
	e2, _ := put(2, 2)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: []sibling.Entry{e1, e2}})
	before := storeStateOf(t, gs, logModelRIDs[0])

	_, other := put(2, 99)
	if err := gs.Write(&Batch{CommitSeq: 2, ApplyFromLog: true, Apply: []AppliedEffect{a1, other}}); err == nil {
		t.Fatal("an effect other than its log entry's was applied")
	}
	if after := storeStateOf(t, gs, logModelRIDs[0]); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused batch changed the store:\n%+v\n%+v", after, before)
	}
	// The same applies without the promise are the caller's own business.
	storeWrite(t, gs, &Batch{CommitSeq: 2, Apply: []AppliedEffect{a1, other}})
}
