package command

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"
)

// RequestHash is the hex SHA-256 of the fields that define a write: op, rid, type, data,
// patch, ifVersion, ticket, ttlMs and server. A retry that repeats the request gets the
// same hash, whatever whitespace its JSON has; a request that differs in any of them, or
// has one present that the other lacks, gets another. The idempotency key itself is not
// part of it: it is what the hash is stored under.
func RequestHash(req *Request) string {
	h := sha256.New()
	field(h, "op", req.Op != "", []byte(req.Op))
	field(h, "rid", req.RID != "", []byte(req.RID))
	field(h, "type", req.Type != "", []byte(req.Type))
	field(h, "data", len(req.Data) > 0, compactOrRaw(req.Data))
	field(h, "patch", len(req.Patch) > 0, compactOrRaw(req.Patch))
	uintField(h, "ifVersion", req.IfVersion)
	uintField(h, "ticket", req.Ticket)
	intField(h, "ttlMs", req.TTLMs)
	intField(h, "server", req.Server)
	return hex.EncodeToString(h.Sum(nil))
}

// field writes one length-prefixed name and value, so no two different field lists can
// produce the same byte stream.
func field(h hash.Hash, name string, present bool, value []byte) {
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(len(name)))
	buf = append(buf, name...)
	if !present {
		buf = append(buf, 0)
		h.Write(buf)
		return
	}
	buf = append(buf, 1)
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	h.Write(buf)
	h.Write(value)
}

func uintField(h hash.Hash, name string, v *uint64) {
	if v == nil {
		field(h, name, false, nil)
		return
	}
	field(h, name, true, strconv.AppendUint(nil, *v, 10))
}

func intField(h hash.Hash, name string, v *int64) {
	if v == nil {
		field(h, name, false, nil)
		return
	}
	field(h, name, true, strconv.AppendInt(nil, *v, 10))
}

// compactOrRaw drops insignificant whitespace; invalid JSON (refused by validation anyway)
// is hashed as it is.
func compactOrRaw(raw json.RawMessage) []byte {
	if valid, _, compact := ScanJSON(raw); !valid || compact {
		return raw
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}
