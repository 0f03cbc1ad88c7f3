package sibling

import (
	"reflect"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	m := &Append{Group: 7, Epoch: 3, Main: 2, Config: 4, PrevEpoch: 2, PrevSeq: 99, CommitSeq: 98, Round: 12,
		Entries: []Entry{{Epoch: 3, Seq: 100, Data: []byte("x")}, {Epoch: 3, Seq: 101, Data: []byte{}}}}
	got, err := UnmarshalAppend(MarshalAppend(nil, m))
	if err != nil {
		t.Fatal(err)
	}
	got.Entries[1].Data = []byte{} // empty data decodes as a zero-length slice either way
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("append round trip:\n got %+v\nwant %+v", got, m)
	}
	a := &Ack{Group: 7, From: 3, Epoch: 3, Round: 12, OK: true, Seq: 101, LastEpoch: 3, LastEpochStart: 50}
	ga, err := UnmarshalAck(MarshalAck(nil, a))
	if err != nil || *ga != *a {
		t.Fatalf("ack round trip: %+v %v", ga, err)
	}
}

func TestCodecRejects(t *testing.T) {
	good := MarshalAppend(nil, &Append{Group: 1, Entries: []Entry{{Epoch: 1, Seq: 1, Data: []byte("abc")}}})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"kind":      append([]byte{'X'}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"group":     MarshalAck(nil, &Ack{})[:1],
	} {
		if _, err := UnmarshalAppend(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := UnmarshalAck([]byte{frameAck, 0x80}); err == nil {
		t.Error("bad varint ack decoded")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(MarshalAppend(nil, &Append{Group: 1, Epoch: 2, Entries: []Entry{{Epoch: 2, Seq: 5, Data: []byte("d")}}}))
	f.Add(MarshalAck(nil, &Ack{Group: 1, OK: true, Seq: 4}))
	f.Add([]byte{frameAppend, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	batch := BatchAck(BatchAppend(NewBatch(nil), &Append{Group: 1, Epoch: 2}), &Ack{Group: 1, OK: true, Seq: 4})
	f.Add(batch)
	f.Fuzz(func(t *testing.T, b []byte) {
		if frames, err := SplitFrames(b); err == nil {
			for _, fr := range frames {
				_, _ = UnmarshalAppend(fr)
				_, _ = UnmarshalAck(fr)
			}
		}
		if m, err := UnmarshalAppend(b); err == nil {
			again, err := UnmarshalAppend(MarshalAppend(nil, m))
			if err != nil || len(again.Entries) != len(m.Entries) || again.PrevSeq != m.PrevSeq {
				t.Fatalf("append does not round trip: %v", err)
			}
		}
		if a, err := UnmarshalAck(b); err == nil {
			again, err := UnmarshalAck(MarshalAck(nil, a))
			if err != nil || *again != *a {
				t.Fatalf("ack does not round trip: %v", err)
			}
		}
	})
}

func TestBatchRoundTrip(t *testing.T) {
	ms := []*Append{{Group: 1, Epoch: 2, Entries: []Entry{{Epoch: 2, Seq: 5, Data: []byte("d")}}}, {Group: 1, Epoch: 2, CommitSeq: 5}}
	b := NewBatch(nil)
	for _, m := range ms {
		b = BatchAppend(b, m)
	}
	b = BatchAck(b, &Ack{Group: 1, OK: true, Seq: 4})
	frames, err := SplitFrames(b)
	if err != nil || len(frames) != 3 {
		t.Fatalf("split %d frames, err %v", len(frames), err)
	}
	for i, m := range ms {
		got, err := UnmarshalAppend(frames[i])
		if err != nil || got.CommitSeq != m.CommitSeq || len(got.Entries) != len(m.Entries) {
			t.Fatalf("frame %d: %+v, %v", i, got, err)
		}
	}
	if a, err := UnmarshalAck(frames[2]); err != nil || a.Seq != 4 {
		t.Fatalf("ack frame: %+v, %v", a, err)
	}
	single := MarshalAck(nil, &Ack{Group: 1})
	if frames, err := SplitFrames(single); err != nil || len(frames) != 1 {
		t.Fatalf("a single frame splits into %d, %v", len(frames), err)
	}
	for _, bad := range [][]byte{{frameBatch}, {frameBatch, 0, 0}, {frameBatch, 0, 0, 0, 9, 'K'}} {
		if _, err := SplitFrames(bad); err == nil {
			t.Errorf("split %q without an error", bad)
		}
	}
}
