package sibling

import (
	"errors"
	"testing"
)

// A sibling that needs entries the main compacted away gets no appends, only round-carrying
// heartbeats at the empty prefix, until the node reports the snapshot installed; it is then
// probed just after the snapshot's seq and counted from there (docs/replication.md case 12).
func TestMainAsksForSnapshotBelowHorizon(t *testing.T) {
	log := NewMemLog()
	if err := log.Append(entries(1, 1, 100)...); err != nil {
		t.Fatal(err)
	}
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, LastEpoch: 1, LastSeq: 100, Commit: 100, EpochFirst: 1,
		History: []EpochStart{{Epoch: 1, FirstSeq: 1}}, Quorum: Quorum{Version: 1, Sets: [][]uint16{{2}}}, Log: log})
	m.Persisted(100)
	// The sibling's log ends at 10 and the main kept only 61.. (the entry at 60 is known by
	// its epoch through the history, in the node; MemLog forgets it).
	m.HandleAck(Ack{Group: 1, From: 2, Epoch: 1, Seq: 10, LastEpoch: 1, LastEpochStart: 1})
	log.Compact(60)
	_, err := m.NextAppend(2)
	if !errors.Is(err, ErrNeedSnapshot) {
		t.Fatalf("NextAppend below the horizon: %v, want ErrNeedSnapshot", err)
	}
	if p := m.Peers()[2]; !p.Snapshot {
		t.Fatalf("peer after the request: %+v", p)
	}
	if a, err := m.NextAppend(2); a != nil || err != nil {
		t.Fatalf("append to a sibling being rebuilt: %+v, %v", a, err)
	}
	hb := m.Heartbeat(2)
	if hb == nil || hb.PrevSeq != 0 || len(hb.Entries) != 0 {
		t.Fatalf("heartbeat during a snapshot: %+v", hb)
	}
	// Acks during the transfer answer rounds but move nothing.
	m.HandleAck(Ack{Group: 1, From: 2, Epoch: 1, OK: true, Seq: 0, Round: hb.Round})
	if p := m.Peers()[2]; p.Match != 0 && p.Match != 10 || !p.Snapshot || p.AckedRound != hb.Round {
		t.Fatalf("peer after an ack during the snapshot: %+v", p)
	}
	m.SnapshotDone(2, 95, true)
	p := m.Peers()[2]
	if p.Snapshot || p.Match != 95 || p.Next != 96 || !p.Probing {
		t.Fatalf("peer after the snapshot: %+v", p)
	}
	a, err := m.NextAppend(2)
	if err != nil || a == nil || a.PrevSeq != 95 || a.Entries[0].Seq != 96 {
		t.Fatalf("first append after the snapshot: %+v, %v", a, err)
	}
}

// A sibling that lost its disk refuses with a log shorter than what it acknowledged. The
// main must stop trusting those acks (Match) and catch it up from what it holds, or it
// probes just past the old Match forever (found by location's simulation, seed 225).
func TestMainCatchesUpASiblingThatLostItsDisk(t *testing.T) {
	log := NewMemLog()
	if err := log.Append(entries(1, 1, 40)...); err != nil {
		t.Fatal(err)
	}
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, LastEpoch: 1, LastSeq: 40, Commit: 37, EpochFirst: 1,
		History: []EpochStart{{Epoch: 1, FirstSeq: 1}}, Quorum: Quorum{Version: 1, Sets: [][]uint16{{2, 3}}}, Log: log})
	m.Persisted(40)
	m.HandleAck(Ack{Group: 1, From: 2, Epoch: 1, OK: true, Seq: 37})
	m.ResetPeer(2) // its connection broke: it restarts on an empty disk
	hb := m.Heartbeat(2)
	if hb.PrevSeq != 37 {
		t.Fatalf("probe at %d, want at Match 37", hb.PrevSeq)
	}
	m.HandleAck(Ack{Group: 1, From: 2, Epoch: 1, Seq: 0, LastEpoch: 0})
	a, err := m.NextAppend(2)
	if err != nil || a == nil || a.PrevSeq != 0 || a.Entries[0].Seq != 1 {
		t.Fatalf("after the refusal: %+v, %v; want entries from seq 1", a, err)
	}
	if p := m.Peers()[2]; p.Match != 0 {
		t.Fatalf("Match of the wiped sibling %d, want 0", p.Match)
	}
	if m.Commit() != 37 {
		t.Fatalf("commit point %d after a sibling lost its disk, want 37 (it never goes back)", m.Commit())
	}
}
