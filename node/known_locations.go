package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// A node remembers the other locations' controllers it learnt (locations.json in its data
// directory), so that after a restart it follows the groups homed elsewhere even while its
// own location has no controller to tell it about them: its --controllers usually name only
// its own location's (docs/locations.md, "A location without controllers").

const knownLocationsFile = "locations.json"

// knownLocation is one other location as a node last learnt it.
type knownLocation struct {
	Name        string   `json:"name"`
	Controllers []string `json:"controllers"`
}

// loadKnownLocations reads what a node recorded in dir ("" or no file: nothing).
func loadKnownLocations(dir string) ([]knownLocation, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, knownLocationsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known locations: %w", err)
	}
	var out []knownLocation
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("known locations in %s: %w", path, err)
	}
	return out, nil
}

// startKnownLocations adds a link (not yet running) for every location recorded in the
// data directory but the node's own. Called by New before run.
func (n *Node) startKnownLocations(known []knownLocation) {
	for _, kl := range known {
		if kl.Name == "" || kl.Name == n.cfg.Location || len(kl.Controllers) == 0 || n.links[kl.Name] != nil {
			continue
		}
		n.links[kl.Name] = n.newLink(kl.Name, kl.Controllers)
	}
}

// rememberLocations records the other locations' controllers the node's links know, when
// they changed since the last record. Only the discovery loop calls it.
func (n *Node) rememberLocations() {
	if n.cfg.DataDir == "" {
		return
	}
	var known []knownLocation
	for _, l := range n.linkList() {
		if l.own {
			continue
		}
		addrs := l.ctrl.candidates()
		sort.Strings(addrs)
		known = append(known, knownLocation{Name: l.loc, Controllers: slices.Compact(addrs)})
	}
	b, err := json.Marshal(known)
	if err != nil || bytes.Equal(b, n.knownWritten) {
		return
	}
	if err := writeFileSynced(filepath.Join(n.cfg.DataDir, knownLocationsFile), known); err != nil {
		n.log.Warn().Err(err).Msg("cannot record the known locations; a restart while this location has no controller will not find them")
		return
	}
	n.knownWritten = b
}
