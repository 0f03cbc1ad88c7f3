package api

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/sibylhq/sibyl/api/internal/jsonscan"
	"github.com/sibylhq/sibyl/command"
)

// opName maps each known op to itself, so that a decoded op shares the constant's bytes.
var opName = func() map[string]string {
	m := make(map[string]string, len(knownOps))
	for op := range knownOps {
		m[op] = op
	}
	return m
}()

// decodeFastFrame decodes the frames nearly every request is (an id, a known op and plain
// fields, no string that needs unescaping) without reflection, to what decodeFrame gives
// for them. It reports false for every other frame, bad ones included, which decodeFrame
// then reads with encoding/json and whose errors it words.
func decodeFastFrame(frame []byte, maxDepth int) (id *string, req *command.Request, ok bool) {
	if valid, depth, _ := command.ScanJSON(frame); !valid || depth > maxDepth || !utf8.Valid(frame) {
		return nil, nil, false
	}
	s := jsonscan.New(frame)
	r := &command.Request{}
	var idStr string
	hasID := false
	str := func(dst *string) bool {
		b, ok := s.Str()
		if ok {
			*dst = string(b)
		}
		return ok
	}
	raw := func(dst *json.RawMessage) bool {
		b, ok := s.Value()
		if !ok || string(b) == "null" { // encoding/json keeps null as its bytes; left to it
			return false
		}
		*dst = append(json.RawMessage(nil), b...)
		return true
	}
	i64 := func(dst **int64) bool {
		v, ok := s.Int()
		if ok {
			*dst = &v
		}
		return ok
	}
	u64 := func(dst **uint64) bool {
		v, ok := s.Uint()
		if ok {
			*dst = &v
		}
		return ok
	}
	ok = s.Object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			hasID = str(&idStr)
			return hasID
		case "op":
			b, ok := s.Str()
			r.Op, ok = opName[string(b)] // the op's constant: no copy per frame
			return ok
		case "rid":
			return str(&r.RID)
		case "type":
			return str(&r.Type)
		case "data":
			return raw(&r.Data)
		case "patch":
			return raw(&r.Patch)
		case "from":
			return raw(&r.From)
		case "server":
			return i64(&r.Server)
		case "node":
			return i64(&r.Node)
		case "ttlMs":
			return i64(&r.TTLMs)
		case "ifVersion":
			return u64(&r.IfVersion)
		case "ticket":
			return u64(&r.Ticket)
		case "minSeq":
			r.MinSeq, ok = s.Uint()
			return ok
		case "limit":
			var v int64
			if v, ok = s.Int(); ok && int64(int(v)) == v {
				r.Limit = int(v)
				return true
			}
			return false
		case "key":
			return str(&r.Key) && r.Key != "" // an empty key is refused, in decodeFrame's words
		case "consistency":
			return str(&r.Consistency)
		case "after":
			return str(&r.After)
		case "sub":
			return str(&r.Sub)
		case "token":
			return str(&r.Token)
		case "name":
			return str(&r.Name)
		case "role":
			return str(&r.Role)
		}
		return false
	})
	if !ok || !s.End() || !hasID || !knownOps[r.Op] {
		return nil, nil, false
	}
	r.JSONChecked = maxDepth <= command.MaxDepth
	return &idStr, r, true
}
