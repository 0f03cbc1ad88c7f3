package client

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decodeReplySlow is what the client decoded every reply with before parseFastReply:
// encoding/json alone.
func decodeReplySlow(data []byte) (r wireReply, id string, matched bool) {
	if json.Unmarshal(data, &r) != nil {
		return wireReply{}, "", false
	}
	if r.Event != "" {
		return r, "", false
	}
	if json.Unmarshal(r.ID, &id) != nil {
		return r, "", false
	}
	return r, id, true
}

// replyFrames are replies as the server writes them (api.appendFastReply) and frames
// around them that the fast path must either read exactly as encoding/json does or leave to it.
var replyFrames = []string{
	`{"id":"7","ok":true,"resource":{"id":"1-01J0000000000000000000000A","type":"bench","version":12,"data":{"n":3,"pad":"xx"},"created":"2026-12-06T23:07:34.123456789Z","updated":"2026-12-06T23:07:35Z"},"epoch":4,"seq":99}`,
	`{"id":"7","ok":true,"resource":{"id":"r","type":"t","version":1,"data":"a]}\"b","created":"2026-12-06T23:07:34+02:00","updated":"2026-12-06T23:07:35Z"},"epoch":4,"seq":99,"duplicate":true}`,
	`{"id":"8","ok":true,"resource":{"id":"r","type":"t","version":1,"data":[1,{"a":[2,"}"]},-3.5e2],"created":"2026-12-06T23:07:34Z","updated":"2026-12-06T23:07:35Z"}}`,
	`{"id":"8","ok":true,"resource":{"id":"r","type":"t","version":1,"data":12.5,"created":"2026-12-06T23:07:34Z","updated":"2026-12-06T23:07:35Z"}}`,
	`{"id":"8","ok":true,"resource":{"id":"r","type":"t","version":1,"data":true,"created":"2026-12-06T23:07:34Z","updated":"2026-12-06T23:07:35Z"}}`,
	`{"id":"8","ok":true,"resource":{"id":"r","type":"t","version":1,"data":null,"created":"2026-12-06T23:07:34Z","updated":"2026-12-06T23:07:35Z"}}`,
	` { "id" : "9" , "ok" : true , "resource" : { "data" : { } , "version" : 0 } , "seq" : 1 } `,
	`{"id":"9","ok":true}`,
	`{"ok":true,"id":"9","epoch":18446744073709551615}`,
	`{"ok":true,"id":"9","epoch":18446744073709551616}`,
	`{"ok":true,"id":"9","epoch":-1}`,
	`{"ok":true,"id":"9","epoch":1.0}`,
	`{"ok":true,"id":"9","duplicate":false}`,
	`{"ok":true,"id":"9","duplicate":null}`,
	`{"ok":true,"ID":"9"}`,
	`{"ok":true,"id":"\u0039"}`,
	`{"ok":true,"id":9}`,
	`{"ok":true,"id":null}`,
	`{"ok":true}`,
	`{"id":"9","ok":false,"error":{"code":"not_found","message":"no such resource"}}`,
	`{"id":"9","ok":true,"resources":[{"id":"a"}],"next":"a"}`,
	`{"event":"updated","sub":"4","resource":{"id":"r"}}`,
	`{"id":"9","ok":true,"resource":{"id":"r","created":"not a time"}}`,
	`{"id":"9","ok":true,"resource":{"id":"r","created":1}}`,
	`{"id":"9","ok":true,"resource":null}`,
	`{"id":"9","ok":true,"resource":{"id":"r","extra":1}}`,
	`{"id":"9","ok":true}x`,
	`{"id":"9","ok":true`,
	`[]`,
	`"9"`,
	``,
}

func checkReply(t *testing.T, frame string) {
	t.Helper()
	var got wireReply
	id, matched := decodeReply([]byte(frame), &got)
	want, wantID, wantMatched := decodeReplySlow([]byte(frame))
	if id != wantID || matched != wantMatched {
		t.Fatalf("%s: id %q matched %v, encoding/json: id %q matched %v", frame, id, matched, wantID, wantMatched)
	}
	if !matched {
		if got.Event != want.Event || got.Sub != want.Sub {
			t.Fatalf("%s: event %q sub %q, encoding/json: %q %q", frame, got.Event, got.Sub, want.Event, want.Sub)
		}
		return
	}
	got.ID, want.ID = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", frame, got, want)
	}
	if got.Resource != nil && got.Resource.Data != nil && want.Resource.Data != nil &&
		!got.Resource.Created.Equal(want.Resource.Created) {
		t.Fatalf("%s: created %v, encoding/json %v", frame, got.Resource.Created, want.Resource.Created)
	}
}

// Every frame decodes to what encoding/json gives; the server's own replies take the fast path.
func TestDecodeReplyMatchesJSON(t *testing.T) {
	for _, f := range replyFrames {
		checkReply(t, f)
	}
	for _, f := range replyFrames[:4] {
		var r wireReply
		if _, ok := parseFastReply([]byte(f), &r); !ok {
			t.Errorf("%s: left to encoding/json, want the fast path", f)
		}
	}
}

// The decoded data does not alias the frame's buffer, which the read loop reuses.
func TestDecodeReplyCopiesData(t *testing.T) {
	frame := []byte(replyFrames[0])
	var r wireReply
	if _, ok := decodeReply(frame, &r); !ok || r.Resource == nil {
		t.Fatalf("not decoded: %+v", r)
	}
	want := string(r.Resource.Data)
	for i := range frame {
		frame[i] = ' '
	}
	if string(r.Resource.Data) != want {
		t.Fatalf("data changed with the frame's buffer: %q, want %q", r.Resource.Data, want)
	}
}

func FuzzDecodeReply(f *testing.F) {
	for _, fr := range replyFrames {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame string) {
		checkReply(t, frame)
	})
}

func BenchmarkDecodeReply(b *testing.B) {
	frame := []byte(`{"id":"12345","ok":true,"resource":{"id":"1-01J0000000000000000000000A","type":"bench","version":12,"data":{"n":3,"pad":"` +
		strings.Repeat("x", 256) + `"},"created":"2026-12-06T23:07:34.123456789Z","updated":"2026-12-06T23:07:35.5Z"},"epoch":4,"seq":99}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r wireReply
			decodeReply(frame, &r)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeReplySlow(frame)
		}
	})
}
