package command

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Advertisements and locations (docs/protocol.md §6, docs/locations.md). An ad says where a
// process is and which life of it is speaking; controllers keep the newest ad of every
// process they hear of and pass ads on to the other locations. Ads are routing and liveness
// hints only: they never carry an epoch or a main, which come from the home directory.

// Ad kinds.
const (
	AdNode       = "node"
	AdController = "controller"
)

// Ad is one advertisement. ID is a node's server ID in decimal or a controller's ID; on
// the wire a node's id is a JSON number and a controller's a string. Path lists the
// instance IDs of the controllers the ad passed, first the one that heard it from its
// origin; a controller's own ad has an empty path. AgeMs is how long ago the origin's
// location heard it, summed over the hops (the time each controller held it), so an ad
// cannot outlive its TTL by being passed around.
type Ad struct {
	Kind        string
	ID          string
	Location    string
	Addr        string
	Instance    string
	Incarnation uint64
	Generation  uint64
	Path        []string
	AgeMs       int64
}

// adJSON is Ad on the wire.
type adJSON struct {
	Kind        string          `json:"kind"`
	ID          json.RawMessage `json:"id"`
	Location    string          `json:"location"`
	Addr        string          `json:"addr"`
	Instance    string          `json:"instance"`
	Incarnation uint64          `json:"incarnation"`
	Generation  uint64          `json:"generation"`
	Path        []string        `json:"path"`
	AgeMs       int64           `json:"ageMs"`
}

// MarshalJSON writes a node's id as a number and a controller's as a string, and an
// empty path as [].
func (a Ad) MarshalJSON() ([]byte, error) {
	var id []byte
	var err error
	if a.Kind == AdNode {
		n, perr := strconv.ParseUint(a.ID, 10, 16)
		if perr != nil {
			return nil, fmt.Errorf("ad of node %q: the id is not a server ID", a.ID)
		}
		id = strconv.AppendUint(nil, n, 10)
	} else if id, err = json.Marshal(a.ID); err != nil {
		return nil, err
	}
	path := a.Path
	if path == nil {
		path = []string{}
	}
	return json.Marshal(adJSON{Kind: a.Kind, ID: id, Location: a.Location, Addr: a.Addr, Instance: a.Instance,
		Incarnation: a.Incarnation, Generation: a.Generation, Path: path, AgeMs: a.AgeMs})
}

// UnmarshalJSON reads an id given as a number or as a string.
func (a *Ad) UnmarshalJSON(b []byte) error {
	var j adJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var id string
	if len(j.ID) > 0 && j.ID[0] == '"' {
		if err := json.Unmarshal(j.ID, &id); err != nil {
			return fmt.Errorf("ad id: %w", err)
		}
	} else if len(j.ID) > 0 {
		n, err := strconv.ParseUint(string(j.ID), 10, 16)
		if err != nil {
			return fmt.Errorf("ad id %s: want a server ID or a controller ID", j.ID)
		}
		id = strconv.FormatUint(n, 10)
	}
	*a = Ad{Kind: j.Kind, ID: id, Location: j.Location, Addr: j.Addr, Instance: j.Instance,
		Incarnation: j.Incarnation, Generation: j.Generation, Path: j.Path, AgeMs: j.AgeMs}
	return nil
}

// Newer reports whether a is a later advertisement of its process than b: a higher
// incarnation (a restart) wins whatever the generations, else the higher generation.
// Instance IDs never order ads (docs/replication.md case 14f).
func (a *Ad) Newer(b *Ad) bool {
	if a.Incarnation != b.Incarnation {
		return a.Incarnation > b.Incarnation
	}
	return a.Generation > b.Generation
}

// AdSender names the controller that sends a batch of ads.
type AdSender struct {
	ID       string `json:"id"`
	Location string `json:"location"`
	Addr     string `json:"addr"`
	Instance string `json:"instance"`
}

// AdBatch is the body of POST /v1/internal/ads: ads one controller passes to another.
type AdBatch struct {
	From AdSender `json:"from"`
	Ads  []Ad     `json:"ads"`
}

// LocationsReply is the answer of GET /v1/locations.
type LocationsReply struct {
	Self      LocationSelf   `json:"self"`
	Locations []LocationInfo `json:"locations"`
}

// LocationSelf names the answering controller's location and instance.
type LocationSelf struct {
	Name     string `json:"name"`
	Instance string `json:"instance"`
}

// LocationInfo is one location as the answering controller knows it. Controllers are HTTP
// addresses; Leader is the leader's HTTP address (nil when unknown); HeardMs is how long
// ago a controller of that location was last heard from (nil: never).
type LocationInfo struct {
	Name        string   `json:"name"`
	Controllers []string `json:"controllers"`
	Leader      *string  `json:"leader"`
	Reachable   bool     `json:"reachable"`
	HeardMs     *int64   `json:"heardMs"`
}
