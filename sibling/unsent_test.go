package sibling

import "testing"

// Unsent is true exactly while NextAppend has entries for some sibling: a new entry, a
// sibling not yet sent it, and not while every sibling waits for its probe's answer.
func TestUnsentFollowsWhatNextAppendWouldSend(t *testing.T) {
	log := NewMemLog()
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Sets: [][]uint16{{2, 3}}}, Log: log})
	if m.Unsent() {
		t.Fatal("unsent with an empty log")
	}
	propose := func() {
		_, seq := m.Assign()
		if err := log.Append(Entry{Epoch: 1, Seq: seq, Data: []byte{byte(seq)}}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(n uint16) *Append {
		a, err := m.NextAppend(n)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	propose()
	if !m.Unsent() {
		t.Fatal("a new entry no sibling was sent is not unsent")
	}
	if send(2) == nil {
		t.Fatal("nothing sent to 2")
	}
	if !m.Unsent() {
		t.Fatal("sibling 3 was not sent the entry, yet nothing is unsent")
	}
	if send(3) == nil {
		t.Fatal("nothing sent to 3")
	}
	if m.Unsent() {
		t.Fatal("unsent after every sibling was sent everything")
	}
	propose()
	if m.Unsent() || send(2) != nil {
		t.Fatal("unsent while both siblings' probes are unanswered: NextAppend sends nothing then")
	}
	m.HandleAck(Ack{Group: 1, From: 2, Epoch: 1, OK: true, Seq: 1})
	if !m.Unsent() {
		t.Fatal("sibling 2 answered its probe and lacks seq 2, yet nothing is unsent")
	}
	if a := send(2); a == nil || a.Entries[len(a.Entries)-1].Seq != 2 {
		t.Fatalf("sent %+v to 2, want seq 2", a)
	}
	if m.Unsent() {
		t.Fatal("unsent while 3's probe is unanswered and 2 has everything")
	}
}
