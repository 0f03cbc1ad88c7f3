package command

import (
	"bytes"
	"encoding/json"
)

// MaxDepth is how deeply data and patches may nest arrays and objects. It bounds the
// recursion of MergePatch and of every other decoder of stored data.
const MaxDepth = 64

// CheckDepth refuses JSON whose arrays and objects nest deeper than max levels ("[]" is one
// level, a scalar none). It only counts brackets outside strings and does not validate;
// call json.Valid as well.
func CheckDepth(raw json.RawMessage, max int) *Error {
	depth, inString, escaped := 0, false, false
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > max {
				return Errorf(CodeBadRequest, "JSON is nested deeper than %d levels", max)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// MergePatch applies patch to target as RFC 7386 defines: an object patch merges into the
// target member by member (null removes a member, objects merge recursively, anything else
// replaces), and any other patch replaces the target whole. An empty target is treated as
// absent. Members keep their order in target; new ones follow in patch order. The result is
// compact JSON. Invalid or too deeply nested input gives bad_request.
func MergePatch(target, patch json.RawMessage) (json.RawMessage, error) {
	var err error
	if len(target) > 0 {
		if target, err = checkJSON("patch target", target); err != nil {
			return nil, err
		}
	}
	if patch, err = checkJSON("patch", patch); err != nil {
		return nil, err
	}
	return mergePatch(target, patch)
}

// checkJSON validates raw and returns it compacted. Compacting once up front means every
// value cut out of it below is compact too, so the result needs no second pass.
func checkJSON(what string, raw json.RawMessage) (json.RawMessage, error) {
	if err := checkValid(what, raw); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, Errorf(CodeBadRequest, "%s: %v", what, err)
	}
	return buf.Bytes(), nil
}

// mergePatch is MergePatch on compact input already known to be valid and shallow enough.
func mergePatch(target, patch json.RawMessage) (json.RawMessage, error) {
	if !isObject(patch) {
		return patch, nil
	}
	var doc object
	if isObject(target) {
		if err := doc.parse(target); err != nil {
			return nil, err
		}
	}
	var ops object
	if err := ops.parse(patch); err != nil {
		return nil, err
	}
	for _, op := range ops.members {
		if string(op.value) == "null" {
			doc.remove(op.name)
			continue
		}
		v, err := mergePatch(doc.get(op.name), op.value)
		if err != nil {
			return nil, err
		}
		doc.set(op.name, v)
	}
	return doc.encode()
}

// object is a JSON object's members in order. A removed member keeps its slot with a nil
// value (skipped when encoding) so that the index stays valid without shifting.
type object struct {
	members []member
	index   map[string]int
}

type member struct {
	name  string
	value json.RawMessage
}

func (o *object) get(name string) json.RawMessage {
	if i, ok := o.index[name]; ok {
		return o.members[i].value
	}
	return nil
}

// set replaces a member's value in place or appends a new member. A repeated name in the
// input thus keeps its first position and its last value, the value encoding/json and
// JavaScript would read.
func (o *object) set(name string, v json.RawMessage) {
	if i, ok := o.index[name]; ok {
		o.members[i].value = v
		return
	}
	if o.index == nil {
		o.index = make(map[string]int)
	}
	o.index[name] = len(o.members)
	o.members = append(o.members, member{name, v})
}

func (o *object) remove(name string) {
	if i, ok := o.index[name]; ok {
		o.members[i].value = nil
		delete(o.index, name)
	}
}

func (o *object) parse(raw json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return Errorf(CodeBadRequest, "reading object: %v", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Errorf(CodeBadRequest, "reading object: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return Errorf(CodeBadRequest, "object member name %v is not a string", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return Errorf(CodeBadRequest, "reading member %q: %v", name, err)
		}
		o.set(name, v)
	}
	return nil
}

func (o *object) encode() (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Names come out as clients wrote them, not as \u003c-style escapes.
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	n := 0
	for _, m := range o.members {
		if m.value == nil {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		n++
		if err := enc.Encode(m.name); err != nil {
			return nil, Errorf(CodeInternal, "encoding member name %q: %v", m.name, err)
		}
		buf.Truncate(buf.Len() - 1) // Encode ends with a newline
		buf.WriteByte(':')
		buf.Write(m.value)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func isObject(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }
