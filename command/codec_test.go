package command

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleEffects() []*Effect {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	res := &Resource{ID: "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4", Type: "doc", Version: 7, Data: json.RawMessage(`{"html":"<b>&amp;</b>","n":1.50}`),
		Created: at.Add(-time.Hour), Updated: at}
	return []*Effect{
		{Kind: EffectPut, RID: res.ID, Resource: res, At: at},
		{Kind: EffectPut, RID: res.ID, Resource: res, At: at,
			Dedupe: &DedupeRecord{Key: "k", Hash: "ab", Op: OpPatch, Epoch: 2, Seq: 9, Resource: res, At: at}},
		{Kind: EffectDelete, RID: res.ID, Version: 8, At: at,
			Dedupe: &DedupeRecord{Key: "é", Hash: "cd", Op: OpDelete, Epoch: 2, Seq: 10, At: at}},
		{Kind: EffectBarrier, At: at},
		{Kind: EffectConfig, Config: 4},
		{Kind: EffectNoop},
	}
}

func TestEffectRoundTrip(t *testing.T) {
	for _, e := range sampleEffects() {
		b, err := EncodeEffect(e)
		if err != nil {
			t.Fatalf("EncodeEffect(%+v): %v", e, err)
		}
		got, err := DecodeEffect(b)
		if err != nil {
			t.Fatalf("DecodeEffect(%s): %v", b, err)
		}
		if !reflect.DeepEqual(&got, e) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, *e)
		}
		if e.Resource != nil && !bytes.Contains(b, e.Resource.Data) {
			t.Fatalf("%s does not hold the data bytes %s", b, e.Resource.Data)
		}
	}
}

func TestDecodeEffectRefuses(t *testing.T) {
	const rid = "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4"
	res := `{"id":"` + rid + `","type":"t","version":1,"data":1,"created":"2025-01-01T00:00:00Z","updated":"2025-01-01T00:00:00Z"}`
	for _, tt := range []struct{ in, msg string }{
		{``, "decoding effect"},
		{`{"k":1`, "decoding effect"},
		{`[]`, "decoding effect"},
		{`{"k":3} {"k":3}`, "data after the effect"},
		{`{"k":3,"extra":1}`, "unknown field"},
		{`{"k":0}`, "unknown effect kind 0"},
		{`{"k":99}`, "unknown effect kind 99"},
		{`{"k":1,"rid":"` + rid + `"}`, "stores no resource"},
		{`{"k":1,"rid":"4-01JDQ8T5Z8K3N2M4P6R8S0V2X4","res":` + res + `}`, "stores resource"},
		{`{"k":1,"rid":"3-x","res":` + res + `}`, `rid "3-x"`},
		{`{"k":1,"rid":"` + rid + `","res":` + strings.Replace(res, `"version":1`, `"version":0`, 1) + `}`, "no version"},
		{`{"k":1,"rid":"` + rid + `","res":` + strings.Replace(res, `"data":1`, `"data":null`, 1) + `}`, ""},
		{`{"k":2,"rid":"` + rid + `"}`, "tombstone version"},
		{`{"k":2,"rid":"` + rid + `","v":2,"res":` + res + `}`, "tombstone version and no resource"},
		{`{"k":3,"rid":"` + rid + `"}`, "names a resource"},
		{`{"k":2,"rid":"` + rid + `","v":2,"dd":{"key":"","hash":"h","op":"delete"}}`, "dedupe record"},
		{`{"k":2,"rid":"` + rid + `","v":2,"dd":{"key":"k","hash":"h","op":"get"}}`, "dedupe record"},
		{`{"k":4,"at":"yesterday"}`, "decoding effect"},
	} {
		_, err := DecodeEffect([]byte(tt.in))
		if tt.msg == "" {
			if err != nil {
				t.Errorf("DecodeEffect(%s): %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("DecodeEffect(%s) = %v, want an error containing %q", tt.in, err, tt.msg)
		}
	}
}

func TestEncodeEffectRefuses(t *testing.T) {
	if _, err := EncodeEffect(&Effect{Kind: EffectPut, RID: "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4"}); err == nil {
		t.Fatal("encoded a put without a resource")
	}
	e := sampleEffects()[0]
	e.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := EncodeEffect(e); err == nil {
		t.Fatal("encoded a time JSON cannot hold")
	}
	for _, e := range sampleEffects() {
		if e.Resource == nil {
			continue
		}
		r := *e.Resource
		r.Updated = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
		e.Resource = &r
		if _, err := EncodeEffect(e); err == nil {
			t.Fatalf("encoded a resource updated in year -1: %+v", e)
		}
	}
}

// FuzzDecodeEffect checks that DecodeEffect never panics, and that whatever it accepts
// encodes, decodes to the same effect and encodes to the same bytes again.
func FuzzDecodeEffect(f *testing.F) {
	for _, e := range sampleEffects() {
		b, err := EncodeEffect(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"K":3,"AT":"2025-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`{"k":2,"rid":"3-01JDQ8T5Z8K3N2M4P6R8S0V2X4","v":1,"k":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEffect(b)
		if err != nil {
			return
		}
		b1, err := EncodeEffect(&e)
		if err != nil {
			t.Fatalf("decoded %+v from %q but cannot encode it: %v", e, b, err)
		}
		e2, err := DecodeEffect(b1)
		if err != nil {
			t.Fatalf("cannot decode %s: %v", b1, err)
		}
		b2, err := EncodeEffect(&e2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not stable:\n%s\n%s (%v)", b1, b2, err)
		}
		e3, err := DecodeEffect(b2)
		if err != nil || !reflect.DeepEqual(e2, e3) {
			t.Fatalf("round trip changed %+v into %+v (%v)", e2, e3, err)
		}
	})
}
