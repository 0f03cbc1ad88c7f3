package sibling

// Entry is one position of a group's log. Data is an encoded command.Effect. An entry keeps
// the epoch it was written in forever.
type Entry struct {
	Epoch uint64 `json:"e"`
	Seq   uint64 `json:"s"`
	Data  []byte `json:"d,omitempty"`
}

// EpochStart records the first seq written in an epoch. A copy's epoch history is the list
// of these, ascending; it survives compaction and travels in snapshots.
type EpochStart struct {
	Epoch    uint64 `json:"e"`
	FirstSeq uint64 `json:"s"`
}

// Append is the main's replication message. With no entries it is a heartbeat. Round
// numbers let the main know which answers were sent after a given moment (linearizable
// reads). Config is the directory's configuration version the main uses.
type Append struct {
	Group     uint16  `json:"g"`
	Epoch     uint64  `json:"e"`
	Main      uint16  `json:"m"`
	Config    uint64  `json:"c"`
	PrevEpoch uint64  `json:"pe"`
	PrevSeq   uint64  `json:"ps"`
	Entries   []Entry `json:"en,omitempty"`
	CommitSeq uint64  `json:"cs"`
	Round     uint64  `json:"r"`
}

// Ack is a sibling's answer to an Append.
//
// OK: the sibling holds the main's log up to Seq (fsynced) in Epoch.
// Not OK with a higher Epoch: the sender is fenced.
// Not OK with the same epoch: the sibling lacks (PrevEpoch, PrevSeq); LastEpoch/Seq is its
// last entry and LastEpochStart the first seq of LastEpoch, so the main can find where the
// logs diverge.
type Ack struct {
	Group          uint16 `json:"g"`
	From           uint16 `json:"f"`
	Epoch          uint64 `json:"e"`
	Round          uint64 `json:"r"`
	OK             bool   `json:"ok"`
	Seq            uint64 `json:"s"`
	LastEpoch      uint64 `json:"le"`
	LastEpochStart uint64 `json:"les"`
}
