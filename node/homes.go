package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

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

// homes holds every group's recorded home; path is "" without a data directory.
type homes struct {
	mu   sync.Mutex
	path string
	recs map[command.ServerID]homeRecord
}

// loadHomes reads the records kept in dataDir ("" keeps them in memory only).
func loadHomes(dataDir string) (*homes, error) {
	h := &homes{recs: map[command.ServerID]homeRecord{}}
	if dataDir == "" {
		return h, nil
	}
	h.path = filepath.Join(dataDir, "homes.json")
	b, err := os.ReadFile(h.path)
	if os.IsNotExist(err) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read recorded homes %s: %w", h.path, err)
	}
	if err := json.Unmarshal(b, &h.recs); err != nil {
		return nil, fmt.Errorf("node: recorded homes %s: %w", h.path, err)
	}
	return h, nil
}

// get returns group id's recorded home.
func (h *homes) get(id command.ServerID) (homeRecord, bool) {
	if h == nil {
		return homeRecord{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.recs[id]
	return r, ok
}

// errHomePromised is record's refusal: the copy promised a later home generation, or
// another home of the same generation, since the seal was checked.
var errHomePromised = errors.New("this copy promised its group to another home")

// record makes r group id's home, durably, unless it is recorded already. The check and
// the write are one step under h.mu: of two seals of one generation from two homes that
// both passed sealHome, only the first is recorded, and the second is refused with
// errHomePromised, so a copy never promises two homes.
func (h *homes) record(id command.ServerID, r homeRecord) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur, ok := h.recs[id]
	if cur == r {
		return nil
	}
	if ok && (cur.Gen > r.Gen || cur.Gen == r.Gen && cur.Home != r.Home) {
		return fmt.Errorf("record home %q generation %d of group %d: %w (%q at generation %d)", r.Home, r.Gen, id, errHomePromised, cur.Home, cur.Gen)
	}
	next := make(map[command.ServerID]homeRecord, len(h.recs)+1)
	for k, v := range h.recs {
		next[k] = v
	}
	next[id] = r
	if h.path != "" {
		if err := writeFileSynced(h.path, next); err != nil {
			return fmt.Errorf("record home %q generation %d of group %d: %w", r.Home, r.Gen, id, err)
		}
	}
	h.recs = next
	return nil
}

// writeFileSynced writes v as JSON to path durably: a temporary file, fsynced, renamed
// over path, and the directory fsynced.
func writeFileSynced(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
