package api

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// appendFastReply encodes the replies every write and read sends (a success with at most
// a resource, epoch, seq and duplicate) without encoding/json, which would scan and copy
// the resource's data twice more. It reports false for any other reply, which then goes
// through json.Marshal. The output is the same JSON object, field for field; resource
// data is written as stored: it was validated as JSON where the request arrived.
func appendFastReply(buf []byte, w *wireReply) ([]byte, bool) {
	if !w.OK || w.Error != nil || w.Resources != nil || w.Next != "" || w.Ticket != nil || w.Token != nil ||
		w.Status != nil || w.Roles != nil {
		return buf, false
	}
	buf = append(buf, '{')
	if len(w.ID) > 0 {
		buf = append(append(append(buf, `"id":`...), w.ID...), ',')
	}
	buf = append(buf, `"ok":true`...)
	if r := w.Resource; r != nil {
		var ok bool
		if buf, ok = appendResourceJSON(append(buf, `,"resource":`...), r); !ok {
			return buf, false
		}
	}
	if w.Epoch != nil {
		buf = strconv.AppendUint(append(buf, `,"epoch":`...), *w.Epoch, 10)
	}
	if w.Seq != nil {
		buf = strconv.AppendUint(append(buf, `,"seq":`...), *w.Seq, 10)
	}
	if w.Duplicate {
		buf = append(buf, `,"duplicate":true`...)
	}
	return append(buf, '}'), true
}

// appendResourceJSON writes r as json.Marshal would, or reports false for what it leaves
// to json.Marshal: strings that need escaping, and times outside years 0-9999.
func appendResourceJSON(buf []byte, r *command.Resource) ([]byte, bool) {
	ok := true
	str := func(s string) {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				ok = false
				return
			}
		}
		buf = append(append(append(buf, '"'), s...), '"')
	}
	tm := func(t time.Time) {
		if y := t.Year(); y < 0 || y > 9999 {
			ok = false
			return
		}
		buf = append(t.AppendFormat(append(buf, '"'), time.RFC3339Nano), '"')
	}
	buf = append(buf, `{"id":`...)
	str(r.ID)
	buf = append(buf, `,"type":`...)
	str(r.Type)
	buf = strconv.AppendUint(append(buf, `,"version":`...), r.Version, 10)
	buf = append(buf, `,"data":`...)
	if len(r.Data) == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, r.Data...)
	}
	buf = append(buf, `,"created":`...)
	tm(r.Created)
	buf = append(buf, `,"updated":`...)
	tm(r.Updated)
	return append(buf, '}'), ok
}

// encodeReply is the JSON of w: the fast path where it applies, json.Marshal otherwise.
func encodeReply(w *wireReply) ([]byte, error) {
	if b, ok := appendFastReply(make([]byte, 0, 256), w); ok {
		return b, nil
	}
	return json.Marshal(w)
}
