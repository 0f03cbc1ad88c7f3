package store

import (
	"fmt"

	resync "github.com/sibylhq/sibyl/sync"
)

// View is one read transaction over a copy's committed layer: its meta and its resources
// agree (the meta's Applied is the position they are the state at).
type View struct {
	Meta Meta
	bk   *groupBuckets
}

// Resource returns the stored encoding of the resource rid (nil: none);
// command.DecodeStoredResource reads it. It is valid only inside the View's function.
func (v *View) Resource(rid string) []byte { return v.bk.resources.get([]byte(rid)) }

// EachResource calls fn with every resource in ID order until fn returns false or an error.
func (v *View) EachResource(fn func(rid, stored []byte) (bool, error)) error {
	return v.bk.resources.each(nil, fn)
}

// Read runs fn over a View of gs in one read transaction.
func Read(gs GroupStore, fn func(v *View) error) error {
	sh, ok := gs.(interface{ shared() *groupStore })
	if !ok {
		return fmt.Errorf("store %T cannot give a consistent view", gs)
	}
	st := sh.shared()
	err := st.txns.view(func(bk *groupBuckets) error {
		m, err := readGroupMeta(bk)
		if err != nil {
			return err
		}
		return fn(&View{Meta: m, bk: bk})
	})
	return st.wrap(err)
}

// EpochAt is the epoch of the entry at seq by the copy's epoch history (0: before the
// first epoch it records).
func (m Meta) EpochAt(seq uint64) uint64 { return historyEpochAt(m.EpochHistory, seq) }

// Sink is gs as the receiving end of a snapshot transfer (resync.Receive).
func Sink(gs GroupStore) resync.Sink { return groupSink{gs} }
