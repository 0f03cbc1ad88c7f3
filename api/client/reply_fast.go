package client

import (
	"encoding/json"

	"github.com/sibylhq/sibyl/api/internal/jsonscan"
	"github.com/sibylhq/sibyl/command"
)

// decodeReply reads a reply frame into r and returns the id it answers. matched is false
// for a frame no request waits on: an event, an id that is not a string ("id": null
// answers a frame the server could not read), or a frame that is not JSON.
//
// The replies every write and read get (a success with at most a resource, epoch, seq and
// duplicate, as the server writes them) are read by parseFastReply without reflection;
// anything else, and any frame parseFastReply does not recognise field for field, goes
// through encoding/json, so both paths give the same result.
func decodeReply(data []byte, r *wireReply) (id string, matched bool) {
	if valid, _, _ := command.ScanJSON(data); !valid {
		return "", false
	}
	if id, ok := parseFastReply(data, r); ok {
		return id, true
	}
	*r = wireReply{}
	if json.Unmarshal(data, r) != nil {
		*r = wireReply{} // a partly decoded frame is neither a reply nor an event
		return "", false
	}
	if r.Event != "" {
		return "", false
	}
	if json.Unmarshal(r.ID, &id) != nil {
		return "", false
	}
	return id, true
}

// parseFastReply reads data, which must be valid JSON, when it is an object of the keys
// "id" (a string), "ok" (true), "resource" (id, type, version, data, created, updated),
// "epoch", "seq" and "duplicate" and nothing else. It reports false for anything else,
// leaving r partly filled.
func parseFastReply(data []byte, r *wireReply) (id string, ok bool) {
	s := jsonscan.New(data)
	hasID := false
	ok = s.Object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			var b []byte
			if b, ok = s.Str(); ok {
				id, hasID = string(b), true
			}
		case "ok":
			r.OK = s.Literal("true")
			ok = r.OK
		case "resource":
			r.Resource = &command.Resource{}
			ok = fastResource(&s, r.Resource)
		case "epoch":
			r.Epoch, ok = s.Uint()
		case "seq":
			r.Seq, ok = s.Uint()
		case "duplicate":
			r.Duplicate, ok = s.Bool()
		}
		return ok
	})
	return id, ok && hasID && r.OK && s.End()
}

// fastResource reads the resource object the server writes. Its data is copied: the
// frame's buffer is reused for the next one.
func fastResource(s *jsonscan.Scanner, res *command.Resource) bool {
	return s.Object(func(key []byte) bool {
		var ok bool
		var b []byte
		switch string(key) {
		case "id":
			if b, ok = s.Str(); ok {
				res.ID = string(b)
			}
		case "type":
			if b, ok = s.Str(); ok {
				res.Type = string(b)
			}
		case "version":
			res.Version, ok = s.Uint()
		case "data":
			// encoding/json keeps "data": null as the bytes null; left to it.
			if b, ok = s.Value(); ok && string(b) != "null" {
				res.Data = json.RawMessage(append([]byte(nil), b...))
			} else {
				ok = false
			}
		case "created":
			if b, ok = s.QuotedStr(); ok {
				ok = res.Created.UnmarshalJSON(b) == nil
			}
		case "updated":
			if b, ok = s.QuotedStr(); ok {
				ok = res.Updated.UnmarshalJSON(b) == nil
			}
		}
		return ok
	})
}
