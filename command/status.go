package command

// Status is the object of GET /v1/status (docs/protocol.md §4).
type Status struct {
	Locations   []StatusLocation   `json:"locations"`
	Controllers []StatusController `json:"controllers"`
	Nodes       []StatusNode       `json:"nodes"`
	Groups      []StatusGroup      `json:"groups"`
}

// StatusLocation is one location: its controllers' IDs, its leader's ID (nil when
// unknown) and whether the answering controller reaches it (its own location: whether it
// knows a leader).
type StatusLocation struct {
	Name        string   `json:"name"`
	Controllers []string `json:"controllers"`
	Leader      *string  `json:"leader"`
	Reachable   bool     `json:"reachable"`
}

type StatusController struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Location string `json:"location"`
	Leader   bool   `json:"leader"`
}

type StatusNode struct {
	ID         uint16 `json:"id"`
	Addr       string `json:"addr"`
	Location   string `json:"location"`
	State      string `json:"state"`
	Instance   string `json:"instance"`
	Generation uint64 `json:"generation"`
	// Reason says why a "degraded" node's store cannot write (docs/protocol.md §7).
	Reason string `json:"reason,omitempty"`
}

// StatusGroup: Main is nil when the group has no main. Home is the location whose
// controllers own the group.
type StatusGroup struct {
	Server   uint16          `json:"server"`
	Home     string          `json:"home"`
	Main     *uint16         `json:"main"`
	Epoch    uint64          `json:"epoch"`
	Seq      uint64          `json:"seq"`
	Siblings []StatusSibling `json:"siblings"`
	Warning  string          `json:"warning,omitempty"`
}

// StatusSibling is one sibling in a StatusGroup. State keeps docs/protocol.md's enum ("syncing" or
// "voting"): a stale copy shows as "syncing" with Stale set.
type StatusSibling struct {
	Node   uint16 `json:"node"`
	State  string `json:"state"`
	LagSeq uint64 `json:"lagSeq"`
	// Stale: the copy was demoted after copy-timeout without a report; it counts nowhere
	// and must resync from a snapshot.
	Stale bool `json:"stale,omitempty"`
	// Unreachable: a voting copy not reported for copy-timeout that stays voting because
	// demoting it would leave the group's write quorum impossible.
	Unreachable bool `json:"unreachable,omitempty"`
	// SyncDone and SyncTotal: bytes of the snapshot the main is sending the copy (the total
	// is an estimate); absent when none is (docs/design.md "Sibling registration").
	SyncDone  uint64 `json:"syncDone,omitempty"`
	SyncTotal uint64 `json:"syncTotal,omitempty"`
}
