package command

import (
	"bytes"
	"encoding/json"
	"io"
	"time"
)

// EncodeEffect is the bytes of e as a log entry stores and replicates it, in the binary
// form (codec_bin.go): resource data keeps the bytes Execute stored. An effect that breaks
// the rules DecodeEffect checks is refused here too, so a bad entry never reaches the log.
func EncodeEffect(e *Effect) ([]byte, error) {
	if err := checkEffect(e, false); err != nil {
		return nil, err
	}
	return appendEffect(nil, e), nil
}

// DecodeEffect reads an effect written by EncodeEffect, or the JSON of older logs. Unknown
// fields and parts are refused rather than ignored: a copy that does not understand all
// of an entry must stop, not apply part of it and diverge from the others.
func DecodeEffect(b []byte) (Effect, error) {
	if len(b) > 0 && b[0] == binaryFormat {
		e, err := decodeBinaryEffect(b)
		if err != nil {
			return Effect{}, Errorf(CodeInternal, "decoding effect: %v", err)
		}
		if err := checkEffect(&e, false); err != nil {
			return Effect{}, err
		}
		return e, nil
	}
	var e Effect
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Effect{}, Errorf(CodeInternal, "decoding effect: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Effect{}, Errorf(CodeInternal, "decoding effect: data after the effect")
	}
	if err := checkEffect(&e, true); err != nil {
		return Effect{}, err
	}
	return e, nil
}

// checkEffect checks what applying e relies on: a known kind, and for resource effects a
// canonical rid that matches the resource they store. Resource data is checked to be JSON
// only when scanData is set: binary effects carry the bytes of a request the receiving
// node validated (ValidateRequest), or of a merge it made, unchanged from there on.
func checkEffect(e *Effect, scanData bool) *Error {
	switch e.Kind {
	case EffectPut:
		if err := checkEffectRID(e); err != nil {
			return err
		}
		if e.Type != "" {
			return Errorf(CodeInternal, "put of rid %q carries a type outside its resource", e.RID)
		}
		if err := checkStored(e.Resource, scanData); err != nil {
			return err
		}
		if e.Resource.ID != e.RID {
			return Errorf(CodeInternal, "effect on rid %q stores resource %q", e.RID, e.Resource.ID)
		}
	case EffectDelete:
		if err := checkEffectRID(e); err != nil {
			return err
		}
		if e.Resource != nil || e.Version == 0 {
			return Errorf(CodeInternal, "delete of rid %q needs a tombstone version and no resource", e.RID)
		}
	case EffectBarrier, EffectConfig, EffectNoop:
		if e.RID != "" || e.Resource != nil || e.Type != "" {
			return Errorf(CodeInternal, "effect of kind %d names a resource", e.Kind)
		}
	case EffectTicket:
	case EffectVacuum:
		if e.Vacuum == nil || e.RID != "" || e.Resource != nil || e.Dedupe != nil || e.Ticket != nil {
			return Errorf(CodeInternal, "vacuum effect needs its bounds and names nothing else")
		}
	default:
		return Errorf(CodeInternal, "unknown effect kind %d", e.Kind)
	}
	if err := checkTicketEffect(e); err != nil {
		return err
	}
	if !effectTimesFit(e) {
		return Errorf(CodeInternal, "effect of kind %d carries a time outside years 0-9999, which replies cannot hold", e.Kind)
	}
	if d := e.Dedupe; d != nil {
		if d.Key == "" || d.Hash == "" || !IsWrite(d.Op) {
			return Errorf(CodeInternal, "dedupe record of rid %q lacks its key, hash or write op", e.RID)
		}
		if d.Resource != nil {
			return checkStored(d.Resource, scanData)
		}
	}
	return nil
}

func checkEffectRID(e *Effect) *Error {
	if _, err := ParseRID(e.RID); err != nil {
		return Errorf(CodeInternal, "effect of kind %d: %s", e.Kind, AsError(err).Message)
	}
	return nil
}

// checkStored checks a resource as effects carry it.
func checkStored(r *Resource, scanData bool) *Error {
	if r == nil {
		return Errorf(CodeInternal, "effect stores no resource")
	}
	if _, err := ParseRID(r.ID); err != nil {
		return Errorf(CodeInternal, "stored resource: %s", AsError(err).Message)
	}
	if r.Version == 0 || checkType(r.Type) != nil || len(r.Data) == 0 || (scanData && !validJSON(r.Data)) {
		return Errorf(CodeInternal, "stored resource %q has no version, a bad type or invalid data", r.ID)
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// effectTimesFit reports whether every time e carries fits RFC 3339 (years 0-9999), as
// replies and events write them.
func effectTimesFit(e *Effect) bool {
	fit := func(t time.Time) bool { y := t.Year(); return y >= 0 && y <= 9999 }
	for _, r := range [2]*Resource{e.Resource, dedupeResource(e.Dedupe)} {
		if r != nil && (!fit(r.Created) || !fit(r.Updated)) {
			return false
		}
	}
	return fit(e.At) && (e.Dedupe == nil || fit(e.Dedupe.At))
}

func dedupeResource(d *DedupeRecord) *Resource {
	if d == nil {
		return nil
	}
	return d.Resource
}
