package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// Every copy keeps the highest config version of its group it ever followed: the quorum
// version of every append it took from a main (sibling.Append.Config), and its own as main.
// A seal reply and the group view report it (command.SealReply.Config), so that a location
// taking a group over from a directory view older than the group's configs finds out from
// the copies it seals (docs/locations.md "Moving a home", rule 5). The version is recorded
// before the entries of the append are acknowledged, so every copy that helped commit a
// new config reports it. It is kept apart from the log, in DataDir/configs.json: log
// compaction and a resync from a snapshot drop entries, never this record, and a restart
// reads it back.

// configsSeen holds every group's highest followed config version; path is "" without a
// data directory.
type configsSeen struct {
	mu   sync.Mutex
	path string
	seen map[command.ServerID]uint64
}

// loadConfigsSeen reads the versions kept in dataDir ("" keeps them in memory only).
func loadConfigsSeen(dataDir string) (*configsSeen, error) {
	c := &configsSeen{seen: map[command.ServerID]uint64{}}
	if dataDir == "" {
		return c, nil
	}
	c.path = filepath.Join(dataDir, "configs.json")
	b, err := os.ReadFile(c.path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read followed config versions %s: %w", c.path, err)
	}
	if err := json.Unmarshal(b, &c.seen); err != nil {
		return nil, fmt.Errorf("node: followed config versions %s: %w", c.path, err)
	}
	return c, nil
}

// get returns the highest config version of group id this node's copy followed (0: none).
func (c *configsSeen) get(id command.ServerID) uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// raise records version v for group id, durably, when it is above the recorded one.
// Versions only rise, so the common case (no change) costs a map lookup.
func (c *configsSeen) raise(id command.ServerID, v uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v <= c.seen[id] {
		return nil
	}
	next := make(map[command.ServerID]uint64, len(c.seen)+1)
	for k, x := range c.seen {
		next[k] = x
	}
	next[id] = v
	if c.path != "" {
		if err := writeFileSynced(c.path, next); err != nil {
			return fmt.Errorf("record config version %d of group %d: %w", v, id, err)
		}
	}
	c.seen = next
	return nil
}
