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
	f.Fuzz(func(t *testing.T, b []byte) {
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
