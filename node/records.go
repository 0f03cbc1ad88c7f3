package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// durableRecords is one small record per group kept in a JSON file of the data directory
// (homes.json, configs.json), written whole and durably on every change, read back at
// start. Without a data directory it lives in memory only.
type durableRecords[V comparable] struct {
	mu   sync.Mutex
	path string
	recs map[command.ServerID]V
}

// loadDurableRecords reads file name of dataDir ("" keeps the records in memory only);
// what names the records in errors.
func loadDurableRecords[V comparable](dataDir, name, what string) (*durableRecords[V], error) {
	d := &durableRecords[V]{recs: map[command.ServerID]V{}}
	if dataDir == "" {
		return d, nil
	}
	d.path = filepath.Join(dataDir, name)
	b, err := os.ReadFile(d.path)
	if os.IsNotExist(err) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read %s %s: %w", what, d.path, err)
	}
	if err := json.Unmarshal(b, &d.recs); err != nil {
		return nil, fmt.Errorf("node: %s %s: %w", what, d.path, err)
	}
	return d, nil
}

// get returns group id's record.
func (d *durableRecords[V]) get(id command.ServerID) (V, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.recs[id]
	return v, ok
}

// set makes v group id's record, durably, if keep (given the current record, ok false
// when there is none) does not say to keep the current one or refuse. The check and the
// write are one step under d.mu.
func (d *durableRecords[V]) set(id command.ServerID, v V, keep func(cur V, ok bool) (bool, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, ok := d.recs[id]
	if same, err := keep(cur, ok); same || err != nil {
		return err
	}
	next := make(map[command.ServerID]V, len(d.recs)+1)
	for k, x := range d.recs {
		next[k] = x
	}
	next[id] = v
	if d.path != "" {
		if err := writeFileSynced(d.path, next); err != nil {
			return err
		}
	}
	d.recs = next
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
