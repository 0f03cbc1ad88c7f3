package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// Helpers for node tests that prepare a copy's store directly (the store's own tests
// have fuller ones in package store).

func storeWrite(t *testing.T, gs store.GroupStore, b *store.Batch) {
	t.Helper()
	if err := gs.Write(b); err != nil {
		t.Fatalf("Write(%+v): %v", *b, err)
	}
}

// storeEntries is n entries of epoch e from seq from, with recognisable data.
func storeEntries(e, from uint64, n int) []sibling.Entry {
	out := make([]sibling.Entry, n)
	for i := range out {
		s := from + uint64(i)
		out[i] = sibling.Entry{Epoch: e, Seq: s, Data: []byte(fmt.Sprintf("e%03d/s%04d", e, s))}
	}
	return out
}

// storeFill writes n resources at seqs from.. in epoch 1 and commits and applies them.
func storeFill(t *testing.T, gs store.GroupStore, from uint64, n int) {
	t.Helper()
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	var apply []store.AppliedEffect
	for i := 0; i < n; i++ {
		seq := from + uint64(i)
		rid := fmt.Sprintf("1-%026d", seq)
		res := &command.Resource{ID: rid, Type: "t", Version: 1, Data: []byte(`{"n":1}`), Created: at, Updated: at}
		apply = append(apply, store.AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectPut, RID: rid, Resource: res, At: at}})
	}
	storeWrite(t, gs, &store.Batch{Append: storeEntries(1, from, n), CommitSeq: from + uint64(n) - 1, Apply: apply})
}
