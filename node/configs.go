package node

import (
	"fmt"

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

// configsSeen holds every group's highest followed config version (configs.json).
type configsSeen struct{ r *durableRecords[uint64] }

// loadConfigsSeen reads the versions kept in dataDir ("" keeps them in memory only).
func loadConfigsSeen(dataDir string) (*configsSeen, error) {
	r, err := loadDurableRecords[uint64](dataDir, "configs.json", "followed config versions")
	if err != nil {
		return nil, err
	}
	return &configsSeen{r}, nil
}

// get returns the highest config version of group id this node's copy followed (0: none).
func (c *configsSeen) get(id command.ServerID) uint64 {
	if c == nil {
		return 0
	}
	v, _ := c.r.get(id)
	return v
}

// raise records version v for group id, durably, when it is above the recorded one.
// Versions only rise, so the common case (no change) costs a map lookup.
func (c *configsSeen) raise(id command.ServerID, v uint64) error {
	err := c.r.set(id, v, func(cur uint64, _ bool) (bool, error) { return v <= cur, nil })
	if err != nil {
		return fmt.Errorf("record config version %d of group %d: %w", v, id, err)
	}
	return nil
}
