package client

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/sibylhq/sibyl/command"
)

// appendRequestFrame encodes the frame of a request as the same JSON object
// json.Marshal(outFrame{...}) gives, fields in the same order, without reflection, for the
// requests that carry only plain fields (writes, gets, tickets): data and patch are
// compacted (and refused when they are not JSON), strings that would need escaping send
// the request through json.Marshal instead. It reports false for anything else, which
// then goes through json.Marshal.
func appendRequestFrame(buf []byte, id string, r *command.Request) ([]byte, bool) {
	if len(r.From) > 0 || r.After != "" || r.Limit != 0 || r.Sub != "" || r.Token != "" || r.Node != nil ||
		r.Name != "" || r.Grants != nil || r.Role != "" || r.Location != "" {
		return buf, false
	}
	ok := true
	str := func(key, s string) {
		if s == "" || !ok {
			return
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				ok = false
				return
			}
		}
		buf = append(append(append(append(append(buf, ",\""...), key...), "\":\""...), s...), '"')
	}
	raw := func(key string, v json.RawMessage) {
		if len(v) == 0 || !ok {
			return
		}
		buf = append(append(append(buf, ",\""...), key...), "\":"...)
		switch valid, _, compact := command.ScanJSON(v); {
		case !valid:
			ok = false
		case compact:
			buf = append(buf, v...)
		default:
			b := bytes.NewBuffer(buf)
			_ = json.Compact(b, v) // valid, so it compacts
			buf = b.Bytes()
		}
	}
	buf = append(buf, `{"id":"`...)
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return buf, false
		}
	}
	buf = append(append(buf, id...), '"')
	if r.Op == "" {
		buf = append(buf, `,"op":""`...)
	}
	str("op", r.Op)
	str("rid", r.RID)
	str("type", r.Type)
	raw("data", r.Data)
	raw("patch", r.Patch)
	if r.Server != nil {
		buf = strconv.AppendInt(append(buf, `,"server":`...), *r.Server, 10)
	}
	if r.IfVersion != nil {
		buf = strconv.AppendUint(append(buf, `,"ifVersion":`...), *r.IfVersion, 10)
	}
	str("key", r.Key)
	if r.Ticket != nil {
		buf = strconv.AppendUint(append(buf, `,"ticket":`...), *r.Ticket, 10)
	}
	if r.TTLMs != nil {
		buf = strconv.AppendInt(append(buf, `,"ttlMs":`...), *r.TTLMs, 10)
	}
	str("consistency", r.Consistency)
	if r.MinSeq != 0 {
		buf = strconv.AppendUint(append(buf, `,"minSeq":`...), r.MinSeq, 10)
	}
	return append(buf, '}'), ok
}
