package sibling

import (
	"errors"
	"fmt"
)

// ErrNeedSnapshot is returned (wrapped) by NextAppend when a sibling needs entries the
// main's log no longer holds: it must be rebuilt from a snapshot (SnapshotDone ends that).
var ErrNeedSnapshot = errors.New("sibling needs a snapshot")

// ErrCompacted is what a Log returns (wrapped) for entries below its compaction horizon.
var ErrCompacted = errors.New("entries compacted")

// MainConfig starts a Main. Last* and Commit describe the main's log when it takes over;
// EpochFirst is the seq of its barrier, the first entry of Epoch (entries below it are of
// older epochs and commit only when an entry at or above it commits).
type MainConfig struct {
	Group      uint16
	Self       uint16
	Epoch      uint64
	LastEpoch  uint64
	LastSeq    uint64
	Commit     uint64
	EpochFirst uint64
	// History is the main's epoch history, its own epoch (at EpochFirst) included.
	History []EpochStart
	Quorum  Quorum
	// Learners receive the log but never count (syncing siblings).
	Learners []uint16
	Log      Log
	// MaxBytes bounds the entry data of one Append; Window the number of unacked Appends
	// in flight to one sibling.
	MaxBytes int
	Window   int
}

// Progress is the main's view of one sibling.
type Progress struct {
	// Match is the highest seq known to be held by the sibling and to match the main's log.
	Match uint64
	// Next is the next seq to send.
	Next uint64
	// Probing: the sibling's position is unknown; send one append at a time from Next.
	Probing  bool
	Inflight int
	// AckedRound is the highest read round the sibling answered in the main's epoch.
	AckedRound uint64
	Learner    bool
	// Snapshot: the sibling is being rebuilt from a snapshot; no entries go to it until
	// SnapshotDone, and its acks only answer read rounds.
	Snapshot bool
}

// Main is the main side of a group's replication. It is not safe for concurrent use.
type Main struct {
	cfg       MainConfig
	lastSeq   uint64
	persisted uint64
	commit    uint64
	peers     map[uint16]*Progress
	round     uint64
	roundSent bool
	fencedBy  uint64
}

// NewMain returns a main for cfg. Every sibling starts probing just after the main's last
// entry, so the first exchange finds where each one stands.
func NewMain(cfg MainConfig) *Main {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.Window <= 0 {
		cfg.Window = 8
	}
	m := &Main{cfg: cfg, lastSeq: cfg.LastSeq, persisted: cfg.LastSeq, commit: cfg.Commit,
		peers: map[uint16]*Progress{}, round: 1}
	m.SetQuorum(cfg.Quorum, cfg.Learners)
	return m
}

// Epoch returns the main's epoch.
func (m *Main) Epoch() uint64 { return m.cfg.Epoch }

// Commit returns the commit point.
func (m *Main) Commit() uint64 { return m.commit }

// LastSeq returns the last assigned seq.
func (m *Main) LastSeq() uint64 { return m.lastSeq }

// Fenced returns the higher epoch a sibling answered with, or 0. A fenced main must stop.
func (m *Main) Fenced() uint64 { return m.fencedBy }

// Quorum returns the quorum in use.
func (m *Main) Quorum() Quorum { return m.cfg.Quorum }

// SetQuorum switches to q (joint while a change is pending) and the given learners, adding
// and dropping siblings as needed. A quorum of an older config version than the one in use
// is ignored, and reported false: configs only move forward, and a main that went back to
// an older one (a directory read before the change, applied after it) could count acks of
// siblings that no longer vote, or commit alone under a group's first, empty config.
func (m *Main) SetQuorum(q Quorum, learners []uint16) bool {
	if q.Version < m.cfg.Quorum.Version {
		return false
	}
	m.cfg.Quorum = q
	m.cfg.Learners = learners
	want := map[uint16]bool{}
	for _, n := range q.Members() {
		want[n] = false
	}
	for _, n := range learners {
		if _, voting := want[n]; !voting {
			want[n] = true
		}
	}
	for n := range m.peers {
		if _, ok := want[n]; !ok {
			delete(m.peers, n)
		}
	}
	for n, learner := range want {
		if n == m.cfg.Self {
			continue
		}
		p, ok := m.peers[n]
		if !ok {
			p = &Progress{Next: m.lastSeq + 1, Probing: true}
			m.peers[n] = p
		}
		p.Learner = learner
	}
	m.advanceCommit()
	return true
}

// Peers returns the siblings the main replicates to.
func (m *Main) Peers() map[uint16]Progress {
	out := make(map[uint16]Progress, len(m.peers))
	for n, p := range m.peers {
		out[n] = *p
	}
	return out
}

// Assign reserves the next seq in the main's epoch. The caller stores the entry in its log
// (so Log serves it) before the next call to NextAppend.
func (m *Main) Assign() (epoch, seq uint64) {
	m.lastSeq++
	return m.cfg.Epoch, m.lastSeq
}

// Persisted records that the main's own log is fsynced up to seq.
func (m *Main) Persisted(seq uint64) {
	if seq > m.persisted {
		m.persisted = seq
		m.advanceCommit()
	}
}

// NextAppend returns the next message for sibling n, or nil when nothing is to be sent now
// (caught up, or the window is full). The caller must call it again after each ack.
//
// Entries go out while the main's own write of them may still be in flight; they commit only
// once the main has persisted them too. A main that restarts therefore may have lost entries
// a sibling holds, so it must never continue in the same epoch: the directory gives a
// restarted main a new epoch, and its barrier supersedes the lost tail.
func (m *Main) NextAppend(n uint16) (*Append, error) {
	p, ok := m.peers[n]
	if !ok || p.Snapshot || p.Next > m.lastSeq || (p.Probing && p.Inflight > 0) || p.Inflight >= m.cfg.Window {
		return nil, nil
	}
	prevSeq := p.Next - 1
	prevEpoch, ok := m.cfg.Log.EpochAt(prevSeq)
	if !ok {
		// Below the horizon: the log was compacted past what the sibling holds.
		p.Snapshot, p.Inflight = true, 0
		return nil, fmt.Errorf("group %d: sibling %d needs seq %d, which the main's log no longer holds: %w", m.cfg.Group, n, prevSeq, ErrNeedSnapshot)
	}
	entries, err := m.cfg.Log.Entries(p.Next, m.lastSeq, m.cfg.MaxBytes)
	if errors.Is(err, ErrCompacted) {
		p.Snapshot, p.Inflight = true, 0
		return nil, fmt.Errorf("group %d: entries for sibling %d: %w (%w)", m.cfg.Group, n, ErrNeedSnapshot, err)
	}
	if err != nil {
		return nil, fmt.Errorf("group %d: entries for sibling %d: %w", m.cfg.Group, n, err)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	msg := m.message(prevEpoch, prevSeq, entries)
	p.Inflight++
	if !p.Probing {
		p.Next = entries[len(entries)-1].Seq + 1
	}
	return msg, nil
}

// Unsent says whether NextAppend would now give some sibling entries it has not been
// sent: its link has work to do.
func (m *Main) Unsent() bool {
	for _, p := range m.peers {
		if !p.Snapshot && p.Next <= m.lastSeq && !(p.Probing && p.Inflight > 0) && p.Inflight < m.cfg.Window {
			return true
		}
	}
	return false
}

// SnapshotDone records that sibling n installed a snapshot at seq: it is probed from there.
// With ok false the transfer failed, and the next NextAppend decides again.
func (m *Main) SnapshotDone(n uint16, seq uint64, ok bool) {
	p, found := m.peers[n]
	if !found || !p.Snapshot {
		return
	}
	p.Snapshot, p.Probing, p.Inflight = false, true, 0
	if ok {
		// The snapshot is the main's committed prefix up to seq: the sibling now holds a
		// prefix that matches, and compaction must not pass it before the first append.
		p.Match = max(p.Match, seq)
		p.Next = p.Match + 1
	}
}

// ResetPeer forgets what is in flight to sibling n (its connection was lost) and probes it
// again from just after what it is known to hold.
func (m *Main) ResetPeer(n uint16) {
	if p, ok := m.peers[n]; ok && !p.Snapshot {
		p.Probing, p.Inflight, p.Next = true, 0, p.Match+1
		if p.Match == 0 {
			p.Next = m.persisted + 1
		}
	}
}

// Round returns the current read round.
func (m *Main) Round() uint64 { return m.round }

// Heartbeat returns an entry-less message for sibling n, attached at what it is known to
// hold, carrying the commit point and the current read round.
func (m *Main) Heartbeat(n uint16) *Append {
	p, ok := m.peers[n]
	if !ok {
		return nil
	}
	if p.Snapshot {
		return m.message(0, 0, nil) // the empty prefix: it only carries the read round
	}
	// A probing sibling is asked about the probe point. A known one is asked about the last
	// entry sent to it: on one ordered connection, appends sent earlier arrive first, so a
	// refusal means they were lost, and the refusal's hint moves Next back to the gap.
	// Asking only about Match would confirm the same prefix forever.
	at := p.Match
	if p.Probing || p.Next-1 > p.Match {
		at = p.Next - 1
	}
	prevEpoch, ok := m.cfg.Log.EpochAt(at)
	if !ok {
		at, prevEpoch = p.Match, 0
		if e, ok := m.cfg.Log.EpochAt(at); ok {
			prevEpoch = e
		}
	}
	return m.message(prevEpoch, at, nil)
}

func (m *Main) message(prevEpoch, prevSeq uint64, entries []Entry) *Append {
	m.roundSent = true
	return &Append{Group: m.cfg.Group, Epoch: m.cfg.Epoch, Main: m.cfg.Self, Config: m.cfg.Quorum.Version,
		PrevEpoch: prevEpoch, PrevSeq: prevSeq, Entries: entries, CommitSeq: m.commit, Round: m.round}
}

// HandleAck applies a sibling's answer. It returns true when the commit point advanced.
func (m *Main) HandleAck(a Ack) bool {
	if a.Epoch > m.cfg.Epoch {
		if a.Epoch > m.fencedBy {
			m.fencedBy = a.Epoch
		}
		return false
	}
	p, ok := m.peers[a.From]
	if !ok || a.Epoch < m.cfg.Epoch {
		// A sibling that has not adopted the epoch yet; it will once the directory says so.
		if ok && p.Inflight > 0 {
			p.Inflight--
		}
		return false
	}
	if p.Inflight > 0 {
		p.Inflight--
	}
	if a.Round > p.AckedRound {
		p.AckedRound = a.Round
	}
	if p.Snapshot {
		return false
	}
	if a.OK {
		if a.Seq > p.Match {
			p.Match = a.Seq
		}
		if p.Probing {
			p.Probing = false
			p.Inflight = 0
			p.Next = p.Match + 1
		} else if p.Next <= p.Match {
			p.Next = p.Match + 1
		}
		before := m.commit
		m.advanceCommit()
		return m.commit > before
	}
	m.backUp(p, a)
	return false
}

// backUp moves a refused sibling's Next back towards the point where its log matches the
// main's. The sibling's hint is (Seq, LastEpoch, LastEpochStart): the epoch of its entry at
// the probed seq (or of its last entry, Seq, when its log is shorter) and the first seq of
// that epoch in its log. Every call moves Next strictly down unless it found a match.
func (m *Main) backUp(p *Progress, a Ack) {
	p.Probing = true
	p.Inflight = 0
	// A sane sibling holds everything it acknowledged, so it can only refuse beyond Match.
	// A refusal that names a shorter log, or another epoch at Match, comes from a copy that
	// lost its disk: its acks stand no more, and it is caught up from what it holds now.
	// (Match only counts toward commits to come; the commit point never goes back.)
	if a.Seq < p.Match {
		p.Match = a.Seq
	} else if e, ok := m.cfg.Log.EpochAt(p.Match); a.Seq == p.Match && ok && e != a.LastEpoch {
		p.Match = 0
	}
	candidate := min(a.Seq, p.Next-1, m.endOfEpoch(a.LastEpoch))
	if e, ok := m.cfg.Log.EpochAt(candidate); ok && e == a.LastEpoch && candidate >= a.LastEpochStart {
		p.Next = candidate + 1 // the sibling holds (e, candidate) too: the logs match up to it
	} else if a.LastEpochStart > 0 && a.LastEpochStart <= candidate {
		p.Next = a.LastEpochStart // probe just before the sibling's run of that epoch
	} else {
		p.Next = candidate
	}
	if p.Next <= p.Match {
		p.Next = p.Match + 1
	}
	if p.Next == 0 {
		p.Next = 1
	}
}

// endOfEpoch returns the last seq the main's log holds of epochs <= e, from its history.
func (m *Main) endOfEpoch(e uint64) uint64 {
	for _, h := range m.cfg.History {
		if h.Epoch > e {
			if h.FirstSeq == 0 {
				return 0
			}
			return h.FirstSeq - 1
		}
	}
	return m.lastSeq
}

func (m *Main) advanceCommit() {
	c := m.cfg.Quorum.Agreed(func(n uint16) uint64 {
		if n == m.cfg.Self {
			return m.persisted
		}
		if p, ok := m.peers[n]; ok {
			return p.Match
		}
		return 0
	}, m.persisted)
	// Only an entry of the main's own epoch commits by counting; older ones commit with it.
	if c > m.commit && c >= m.cfg.EpochFirst {
		m.commit = c
	}
}

// ReadRound returns the round a linearizable read that arrives now must see confirmed: one
// not yet sent to anyone, so every answer to it was sent after the read arrived.
func (m *Main) ReadRound() uint64 {
	if m.roundSent {
		m.round++
		m.roundSent = false
	}
	return m.round
}

// RoundConfirmed reports whether a majority of every voting set answered round r (or a
// later one) in the main's epoch.
func (m *Main) RoundConfirmed(r uint64) bool {
	agreed := m.cfg.Quorum.Agreed(func(n uint16) uint64 {
		if n == m.cfg.Self {
			return r
		}
		if p, ok := m.peers[n]; ok {
			return p.AckedRound
		}
		return 0
	}, r)
	return agreed >= r
}
