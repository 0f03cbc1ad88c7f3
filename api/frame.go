package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/sibylhq/sibyl/command"
)

// wireRequest is one request frame (or one REST body). The id stays raw so that an id of
// the wrong type is reported as bad_request with "id": null instead of failing the whole
// decode: the protocol echoes the id whenever it can be read as a string.
//
// Key shadows the embedded Request.Key so that an empty "key" can be told from an absent
// one: keys are 1..128 characters, and "key":"" is refused rather than taken as no key.
type wireRequest struct {
	ID  json.RawMessage `json:"id"`
	Key *string         `json:"key"`
	command.Request
}

// knownOps are the ops of docs/protocol.md §2 and §3; anything else is bad_request.
var knownOps = map[string]bool{
	command.OpCreate: true, command.OpGet: true, command.OpUpdate: true, command.OpPatch: true,
	command.OpDelete: true, command.OpList: true, command.OpSubscribe: true,
	command.OpUnsubscribe: true, command.OpAcquireTicket: true, command.OpRenewTicket: true,
	command.OpReleaseTicket: true, command.OpStatus: true, command.OpHello: true,
	command.OpRegisterSibling: true, command.OpRemoveSibling: true, command.OpPromote: true,
	command.OpDrain: true, command.OpRemoveNode: true, command.OpCreateRole: true, command.OpDeleteRole: true,
	command.OpListRoles: true, command.OpCreateToken: true, command.OpRevokeToken: true,
	command.OpRehome: true,
}

// isAdminOp reports whether op needs an admin token (docs/protocol.md §3 and §7).
func isAdminOp(op string) bool { return command.IsAdminOp(op) }

// decodeFrame turns one text frame into a request. Exactly one of req and err is non-nil.
// id is the frame's id when it could be read as a string (also on most errors, so the
// client can match the failure), and nil when it could not.
func decodeFrame(frame []byte, maxDepth int) (id *string, req *command.Request, err *command.Error) {
	if id, req, ok := decodeFastFrame(frame, maxDepth); ok {
		return id, req, nil
	}
	return decodeJSONFrame(frame, maxDepth)
}

// decodeJSONFrame is decodeFrame with encoding/json, for every frame.
func decodeJSONFrame(frame []byte, maxDepth int) (id *string, req *command.Request, err *command.Error) {
	w, perr := parseObject(frame, maxDepth)
	if w == nil {
		if !utf8.Valid(frame) {
			return nil, nil, perr // an id read from bad UTF-8 would not be the one sent
		}
		return readID(frame), nil, perr
	}
	id, idErr := frameID(w.ID)
	if idErr != nil {
		return nil, nil, idErr
	}
	if perr != nil {
		return id, nil, perr
	}
	if w.Op == "" {
		return id, nil, command.Errorf(command.CodeBadRequest, "frame has no op")
	}
	if !knownOps[w.Op] {
		return id, nil, command.Errorf(command.CodeBadRequest, "unknown op %q", w.Op)
	}
	w.Request.JSONChecked = maxDepth <= command.MaxDepth
	return id, &w.Request, nil
}

// decodeBody turns a REST body into the op's fields; an empty body means no fields.
// Any "id" or "op" in the body is ignored: the route names the op.
func decodeBody(body []byte, maxDepth int) (*command.Request, *command.Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return &command.Request{}, nil
	}
	w, err := parseObject(body, maxDepth)
	if err != nil {
		return nil, err
	}
	w.Request.JSONChecked = maxDepth <= command.MaxDepth
	return &w.Request, nil
}

// parseObject decodes data as a request object. It returns (nil, err) when data is not a
// JSON object at all (bad UTF-8, too deep, bad syntax), and (w, err) with err set when the
// object parsed but a field has the wrong type: then w still holds the fields that did
// decode, the id among them.
func parseObject(data []byte, maxDepth int) (*wireRequest, *command.Error) {
	if !utf8.Valid(data) {
		return nil, command.Errorf(command.CodeBadRequest, "frame is not valid UTF-8")
	}
	if err := checkDepth(data, maxDepth); err != nil {
		return nil, err
	}
	var w wireRequest
	err := json.Unmarshal(data, &w)
	if w.Key != nil {
		w.Request.Key = *w.Key
	}
	if err == nil {
		if w.Key != nil && *w.Key == "" {
			return &w, command.Errorf(command.CodeBadRequest, "key is empty: a key has 1 to %d characters; leave it out for a write without one", command.MaxKeyLen)
		}
		return &w, nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return nil, command.Errorf(command.CodeBadRequest, "frame must be a JSON object, got %s", typeErr.Value)
		}
		// The decoder names fields by their Go path; the client knows only the JSON key.
		field := strings.TrimPrefix(typeErr.Field, "Request.")
		return &w, command.Errorf(command.CodeBadRequest, "field %q must be %s, got %s",
			field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	}
	return nil, command.Errorf(command.CodeBadRequest, "frame is not valid JSON: %v", err)
}

// jsonKind names a Go kind the way a client thinks of JSON.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "uint64":
		return "a non-negative integer"
	}
	return "a " + kind
}

// frameID reads a raw id: it must be present and a JSON string.
func frameID(raw json.RawMessage) (*string, *command.Error) {
	if len(raw) == 0 {
		return nil, command.Errorf(command.CodeBadRequest, "frame has no id")
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, command.Errorf(command.CodeBadRequest, "id must be a string, got %s", clip(raw))
	}
	return &s, nil
}

// readID finds the top-level "id" of a frame that did not decode as a whole, streaming
// tokens so that it reaches the id even in a frame that is too deep or breaks off later.
// Like encoding/json, the last "id" wins.
func readID(frame []byte) *string {
	dec := json.NewDecoder(bytes.NewReader(frame))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var id *string
	for dec.More() {
		t, err := dec.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return id
		}
		if key != "id" {
			if skipValue(dec) != nil {
				return id
			}
			continue
		}
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return id
		}
		id, _ = frameID(raw)
	}
	return id
}

// skipValue consumes one value of any depth without building it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// checkDepth refuses JSON nested deeper than max (the frame's own object is level 1)
// with one pass over the bytes, before any decoder allocates for the nesting. It counts
// brackets outside strings only; syntax errors are left to the decoder.
func checkDepth(data []byte, max int) *command.Error {
	depth := 0
	inString, escaped := false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return command.Errorf(command.CodeBadRequest, "JSON nested deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// clip shortens raw input quoted in an error message.
func clip(raw []byte) string {
	const max = 64
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}
