package node

import (
	"errors"
	"fmt"

	"github.com/sibylhq/sibyl/command"
)

// A copy records, with the promise a seal makes, the home that sealed it and that home's
// generation (docs/locations.md "Moving a home"). The record outlives the copy's data (a
// resync wipes the copy, not the promise) and a restart: it is fsynced before the seal's
// epoch is, in DataDir/homes.json. From then on the copy refuses seals of an older
// generation and of another home of the same generation, and the node follows no
// directory that lists the group at an older generation.

// homeRecord is the home a copy of one group promised.
type homeRecord struct {
	Home string `json:"home"`
	Gen  uint64 `json:"gen"`
}

// homes holds every group's recorded home (homes.json).
type homes struct{ r *durableRecords[homeRecord] }

// loadHomes reads the records kept in dataDir ("" keeps them in memory only).
func loadHomes(dataDir string) (*homes, error) {
	r, err := loadDurableRecords[homeRecord](dataDir, "homes.json", "recorded homes")
	if err != nil {
		return nil, err
	}
	return &homes{r}, nil
}

// get returns group id's recorded home.
func (h *homes) get(id command.ServerID) (homeRecord, bool) {
	if h == nil {
		return homeRecord{}, false
	}
	return h.r.get(id)
}

// errHomePromised is record's refusal: the copy promised a later home generation, or
// another home of the same generation, since the seal was checked.
var errHomePromised = errors.New("this copy promised its group to another home")

// record makes r group id's home, durably, unless it is recorded already. The check and
// the write are one step: of two seals of one generation from two homes that both passed
// sealHome, only the first is recorded, and the second is refused with errHomePromised,
// so a copy never promises two homes.
func (h *homes) record(id command.ServerID, r homeRecord) error {
	err := h.r.set(id, r, func(cur homeRecord, ok bool) (bool, error) {
		if cur == r {
			return true, nil
		}
		if ok && (cur.Gen > r.Gen || cur.Gen == r.Gen && cur.Home != r.Home) {
			return false, fmt.Errorf("%w (%q at generation %d)", errHomePromised, cur.Home, cur.Gen)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("record home %q generation %d of group %d: %w", r.Home, r.Gen, id, err)
	}
	return nil
}
