package sibling

import "fmt"

// FollowerState is what a sibling's copy holds when its Follower starts (read from disk).
type FollowerState struct {
	Group     uint16
	Self      uint16
	Epoch     uint64
	LastEpoch uint64
	LastSeq   uint64
	Commit    uint64
	History   []EpochStart
	Log       Log
}

// Step is what a Follower asks the node to do with one Append: fsync the new epoch (if
// Epoch is set), truncate from Truncate (if > 0), append Append, and raise the commit point
// to Commit, all in one durable write; then send Ack. A Step with Violation set must not be
// applied: the copy stops serving the group and resyncs.
type Step struct {
	Epoch     uint64
	Truncate  uint64
	Append    []Entry
	Commit    uint64
	Ack       Ack
	Violation error
}

// Durable reports whether the step changes anything on disk.
func (s *Step) Durable() bool {
	return s.Epoch != 0 || s.Truncate != 0 || len(s.Append) > 0 || s.Commit != 0
}

// Follower is the sibling side of a group's replication. It is not safe for concurrent use.
type Follower struct {
	st FollowerState
	// verified is the last seq known to match the current epoch's main.
	verified uint64
	// commitHeard is the highest commitSeq received in the current epoch.
	commitHeard uint64
}

// NewFollower returns a follower for a copy in state st.
func NewFollower(st FollowerState) *Follower { return &Follower{st: st} }

// Epoch returns the copy's epoch.
func (f *Follower) Epoch() uint64 { return f.st.Epoch }

// Commit returns the copy's commit point.
func (f *Follower) Commit() uint64 { return f.st.Commit }

// Last returns the copy's last entry.
func (f *Follower) Last() (epoch, seq uint64) { return f.st.LastEpoch, f.st.LastSeq }

// History returns the copy's epoch history.
func (f *Follower) History() []EpochStart { return f.st.History }

// Seal adopts epoch (the node has fsynced it): from now on the copy refuses every main of
// a lower epoch. Returns false if the copy is already at epoch or above.
func (f *Follower) Seal(epoch uint64) bool {
	if epoch <= f.st.Epoch {
		return false
	}
	f.st.Epoch = epoch
	f.verified, f.commitHeard = 0, 0
	return true
}

// Authorize says whether (epoch, main) is a record the controller committed for this group.
// A follower adopts a higher epoch only on an authorized record.
type Authorize func(epoch uint64, main uint16) bool

// Step handles one Append. The follower's state moves on as if the returned Step was made
// durable; if the node fails to persist it, it must rebuild the Follower from disk.
func (f *Follower) Step(msg *Append, authorized Authorize) Step {
	ack := Ack{Group: f.st.Group, From: f.st.Self, Epoch: f.st.Epoch, Round: msg.Round}
	var step Step
	switch {
	case msg.Epoch < f.st.Epoch:
		// Rule (a): a fenced main learns the epoch it lost to.
		step.Ack = ack
		return step
	case msg.Epoch > f.st.Epoch:
		if !authorized(msg.Epoch, msg.Main) {
			step.Ack = ack // not yet known to be a committed record: refuse, the main retries
			return step
		}
		// Rule (b): adopt and fsync before anything else (it is part of this step's write).
		f.st.Epoch = msg.Epoch
		f.verified, f.commitHeard = 0, 0
		step.Epoch = msg.Epoch
		ack.Epoch = msg.Epoch
	}

	// Rule (c): the append must attach to an entry the copy holds.
	if e, ok := f.epochAt(msg.PrevSeq); !ok || e != msg.PrevEpoch {
		step.Ack = f.refusal(ack, msg.PrevSeq, e, ok)
		return step
	}

	// Rule (d): skip entries already held with the same epoch; truncate at the first
	// conflict; append the rest.
	entries := msg.Entries
	for len(entries) > 0 {
		e0 := entries[0]
		held, ok := f.epochAt(e0.Seq)
		if !ok {
			break
		}
		if held != e0.Epoch {
			// Rule (e): never truncate at or below the commit point.
			if e0.Seq <= f.st.Commit {
				step.Violation = fmt.Errorf("group %d: append of (%d,%d) would truncate at or below commit point %d",
					f.st.Group, e0.Epoch, e0.Seq, f.st.Commit)
				return step
			}
			step.Truncate = e0.Seq
			f.truncate(e0.Seq)
			break
		}
		entries = entries[1:]
	}
	for _, e := range entries {
		if e.Seq != f.st.LastSeq+1 {
			step.Violation = fmt.Errorf("group %d: entry seq %d does not follow last seq %d", f.st.Group, e.Seq, f.st.LastSeq)
			return step
		}
		if e.Epoch != f.st.LastEpoch {
			f.st.History = append(f.st.History, EpochStart{Epoch: e.Epoch, FirstSeq: e.Seq})
		}
		f.st.LastEpoch, f.st.LastSeq = e.Epoch, e.Seq
	}
	step.Append = entries

	last := msg.PrevSeq
	if n := len(msg.Entries); n > 0 {
		last = msg.Entries[n-1].Seq
	}
	if last > f.verified {
		f.verified = last
	}
	if msg.CommitSeq > f.commitHeard {
		f.commitHeard = msg.CommitSeq
	}
	if c := min(f.commitHeard, f.verified); c > f.st.Commit {
		f.st.Commit = c
		step.Commit = c
	}
	ack.OK = true
	ack.Seq = last
	step.Ack = ack
	return step
}

// refusal builds the hint of rule (c): the epoch of the entry held at seq (or of the last
// entry when the log is shorter) and the first seq of that epoch in this copy.
func (f *Follower) refusal(ack Ack, seq, heldEpoch uint64, held bool) Ack {
	if !held || seq > f.st.LastSeq {
		ack.Seq, ack.LastEpoch = f.st.LastSeq, f.st.LastEpoch
	} else {
		ack.Seq, ack.LastEpoch = seq, heldEpoch
	}
	ack.LastEpochStart = f.firstSeqOf(ack.LastEpoch)
	return ack
}

func (f *Follower) firstSeqOf(epoch uint64) uint64 {
	for _, h := range f.st.History {
		if h.Epoch == epoch {
			return h.FirstSeq
		}
	}
	return 0
}

// epochAt answers from the history for entries the copy holds; seq 0 is the empty prefix.
func (f *Follower) epochAt(seq uint64) (uint64, bool) {
	if seq == 0 {
		return 0, true
	}
	if seq > f.st.LastSeq {
		return 0, false
	}
	var e uint64
	found := false
	for _, h := range f.st.History {
		if h.FirstSeq > seq {
			break
		}
		e, found = h.Epoch, true
	}
	if !found {
		// Below the first recorded epoch start: compacted or never held.
		return f.st.Log.EpochAt(seq)
	}
	return e, true
}

func (f *Follower) truncate(from uint64) {
	kept := f.st.History[:0]
	for _, h := range f.st.History {
		if h.FirstSeq < from {
			kept = append(kept, h)
		}
	}
	f.st.History = kept
	f.st.LastSeq = from - 1
	f.st.LastEpoch = 0
	if n := len(kept); n > 0 {
		f.st.LastEpoch = kept[n-1].Epoch
	}
	if f.verified > f.st.LastSeq {
		f.verified = f.st.LastSeq
	}
}
