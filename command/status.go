package command

// Status is the object of GET /v1/status (docs/protocol.md §4).
type Status struct {
	Locations   []StatusLocation   `json:"locations"`
	Controllers []StatusController `json:"controllers"`
	Nodes       []StatusNode       `json:"nodes"`
	Groups      []StatusGroup      `json:"groups"`
	// Promotions are the location's last promotions that completed, newest first (at most
	// MaxPromotionHistory), as its controllers recorded them.
	Promotions []StatusPromotion `json:"promotions"`
	// Operations are the admin calls the controller leader is running now (registrations and
	// drains) with their progress.
	Operations []StatusOperation `json:"operations"`
	// Moved lists the groups this location homed until another location took them over
	// (rehome), with their home now.
	Moved []MovedGroup `json:"moved,omitempty"`
}

// MaxPromotionHistory bounds the promotions a location keeps and Status lists.
const MaxPromotionHistory = 20

// Promotion reasons: why a group got a new main (StatusPromotion.Reason and the reason label
// of sibyl_promotions_total).
const (
	ReasonMainUnreachable = "main_unreachable" // the main stopped heartbeating or its process is gone
	ReasonNoMain          = "no_main"          // the group had no main (it came back with a wiped disk)
	ReasonNoQuorum        = "no_quorum"        // the main reported no write quorum while its voters were alive
	ReasonMainSilent      = "main_silent"      // the main reported no role in its epoch
	ReasonBarrierOverdue  = "barrier_overdue"  // a chosen main's barrier did not commit within down-after
	ReasonDiskFault       = "disk_fault"       // the main reported its disk failing (degraded) for down-after
	ReasonPlanned         = "planned"          // admin promote
	ReasonDrain           = "drain"            // admin drain moved the main role off the node
	ReasonRehome          = "rehome"           // admin rehome: another location took over the group
)

// PromotionReasons lists every reason, in the order the page and the metrics use.
var PromotionReasons = []string{ReasonMainUnreachable, ReasonNoMain, ReasonNoQuorum, ReasonMainSilent,
	ReasonBarrierOverdue, ReasonDiskFault, ReasonPlanned, ReasonDrain, ReasonRehome}

// StatusPromotion is one completed promotion: group Server's main went from From (0: none)
// to To in Epoch, for Reason. AtMs (Unix milliseconds, the leader's clock) is when the new
// main's barrier was known committed; Seconds is the time from the first suspicion (for a
// planned promotion: the admin call) to then, absent when unknown.
type StatusPromotion struct {
	AtMs    int64    `json:"atMs"`
	Server  uint16   `json:"server"`
	Epoch   uint64   `json:"epoch"`
	From    uint16   `json:"from"`
	To      uint16   `json:"to"`
	Reason  string   `json:"reason"`
	Seconds *float64 `json:"seconds,omitempty"`
}

// Operations in StatusOperation.Op.
const (
	OperationRegister = "registerSibling"
	OperationDrain    = "drain"
)

// StatusOperation is a running admin call. For registerSibling, Phase is "sync" (Done and
// Total count bytes of the snapshot being sent; 0 of 0 before it starts or when the log
// reaches back far enough), "replay" (entries the copy holds of the main's last seq) or
// "vote" (caught up, waiting to become a voter). For drain, Phase names the step
// ("promote", "move", "spare") and Done and Total count the groups moved.
type StatusOperation struct {
	Op        string `json:"op"`
	Server    uint16 `json:"server,omitempty"`
	Node      uint16 `json:"node"`
	StartedMs int64  `json:"startedMs"`
	Phase     string `json:"phase"`
	Done      uint64 `json:"done"`
	Total     uint64 `json:"total"`
	Unit      string `json:"unit"`
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
	// Load is the main's write load over the last minute, as its latest heartbeat reported
	// it; absent when the main sent none.
	Load *GroupLoad `json:"load,omitempty"`
}

// LoadSeconds is the span of GroupLoad: one bucket per second for the last minute.
const LoadSeconds = 60

// GroupLoad is a main's write load: per second, oldest first, the entries it committed and
// the 99th percentile of their commit latency (seq assigned to quorum-durable) in
// milliseconds (0 for a second without commits). EndS is the Unix second of the last,
// still running, bucket. Rate and P99Ms sum up the full seconds of the span.
type GroupLoad struct {
	EndS        int64     `json:"endS"`
	Commits     []uint32  `json:"commits"`
	P99Ms       []float64 `json:"p99Ms"`
	Rate        float64   `json:"rate"`
	MinuteP99Ms float64   `json:"minuteP99Ms"`
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
