package node

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/sibylhq/sibyl/command"
)

// Resume tokens (docs/protocol.md §2, docs/replication.md case 11).
//
// A token names, for every group a subscription covers, the position (epoch, seq) of the
// last entry of that group the subscription passed: the entry of its last event, or a later
// entry it passed without a match. Positions are entries, never re-stamped, so a copy
// checks a token by comparing the epoch of its own committed entry at that seq. A group
// absent from a token starts at its first entry, which is why a `type` token lists every
// group with a position other than (0,0).
//
// Layout before base64url (no padding): version byte (1), filter kind byte, 4-byte
// big-endian FNV-1a hash of the filter (so a token of another filter is refused rather
// than silently read with the wrong meaning), uvarint count, then per group in ascending
// order: uvarint group delta (>= 1 from the previous group, the first from 0), uvarint
// epoch, uvarint seq. A server or rid token is about 12 characters; a `type` token adds
// about 5 bytes per group.

const tokenVersion = 1

// maxTokenLen bounds what the decoder looks at: 65535 groups of at most 21 bytes each,
// base64-encoded, fit in well under 2 MiB, and the frame limit is smaller anyway.
const maxTokenLen = 2 << 20

// position is a place in one group's committed log: the entry (Epoch, Seq), or (0,0)
// before the first entry.
type position struct {
	Epoch uint64 `json:"e"`
	Seq   uint64 `json:"s"`
}

func (p position) String() string { return fmt.Sprintf("(%d,%d)", p.Epoch, p.Seq) }

// after reports whether p is later in the log than q (seqs order one group's history).
func (p position) after(q position) bool { return p.Seq > q.Seq }

func laterOf(p, q position) position {
	if q.after(p) {
		return q
	}
	return p
}

// filterKind is what a subscription selects on.
type filterKind uint8

const (
	filterRID    filterKind = 1
	filterServer filterKind = 2
	filterType   filterKind = 3
	// filterFeed is node-to-node: every entry of one group, internal ones included (the
	// upstream of a node that holds no copy). It has no tokens.
	filterFeed filterKind = 4
)

func (k filterKind) String() string {
	switch k {
	case filterRID:
		return "rid"
	case filterServer:
		return "server"
	case filterType:
		return "type"
	case filterFeed:
		return "feed"
	}
	return "kind " + strconv.Itoa(int(k))
}

// filter is a subscription's selection. rid, server and feed filters cover one group;
// a type filter covers every group.
type filter struct {
	kind  filterKind
	group command.ServerID
	rid   string
	typ   string
}

func (f filter) String() string {
	switch f.kind {
	case filterRID:
		return "rid " + f.rid
	case filterType:
		return "type " + strconv.Quote(f.typ)
	}
	return f.kind.String() + " " + strconv.Itoa(int(f.group))
}

// hash identifies the filter inside its tokens.
func (f filter) hash() uint32 {
	h := fnv.New32a()
	h.Write([]byte{byte(f.kind)})
	switch f.kind {
	case filterRID:
		h.Write([]byte(f.rid))
	case filterType:
		h.Write([]byte(f.typ))
	default:
		h.Write([]byte(strconv.Itoa(int(f.group))))
	}
	return h.Sum32()
}

// matches reports whether an entry of kind, rid and typ is an event of this filter (the
// group is the hub's business).
func (f filter) matches(kind eventKind, rid, typ string) bool {
	switch f.kind {
	case filterFeed:
		return true
	case filterServer:
		return kind != evInternal
	case filterRID:
		return kind != evInternal && rid == f.rid
	case filterType:
		return kind != evInternal && typ == f.typ
	}
	return false
}

// groupPos is one group's position inside a token.
type groupPos struct {
	Group command.ServerID
	Pos   position
}

// token is a decoded resume token.
type token struct {
	Kind   filterKind
	Hash   uint32
	Groups []groupPos // ascending by group, each at most once
}

// encodeToken writes t; Groups must be ascending without repeats.
func encodeToken(t token) string {
	b := make([]byte, 0, 8+len(t.Groups)*12)
	b = append(b, tokenVersion, byte(t.Kind))
	b = binary.BigEndian.AppendUint32(b, t.Hash)
	b = binary.AppendUvarint(b, uint64(len(t.Groups)))
	prev := uint64(0)
	for _, g := range t.Groups {
		b = binary.AppendUvarint(b, uint64(g.Group)-prev)
		b = binary.AppendUvarint(b, g.Pos.Epoch)
		b = binary.AppendUvarint(b, g.Pos.Seq)
		prev = uint64(g.Group)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken reads a token, refusing anything encodeToken would not have written. It
// never panics, whatever s holds (FuzzToken).
func decodeToken(s string) (token, error) {
	var t token
	if s == "" {
		return t, fmt.Errorf("token is empty")
	}
	if len(s) > maxTokenLen {
		return t, fmt.Errorf("token is %d bytes, over the %d-byte limit", len(s), maxTokenLen)
	}
	// Strict: the unused bits of the last character must be zero, so a token has one
	// spelling. The decoder also skips '\r' and '\n' anywhere, which would give a token a
	// second spelling: refuse them first.
	if strings.ContainsAny(s, "\r\n") {
		return t, fmt.Errorf("token has a line break")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return t, fmt.Errorf("token is not base64url: %v", err)
	}
	if len(b) < 7 {
		return t, fmt.Errorf("token is %d bytes, too short", len(b))
	}
	if b[0] != tokenVersion {
		return t, fmt.Errorf("token version %d is not supported", b[0])
	}
	t.Kind = filterKind(b[1])
	if t.Kind < filterRID || t.Kind > filterType {
		return t, fmt.Errorf("token names an unknown filter kind %d", b[1])
	}
	t.Hash = binary.BigEndian.Uint32(b[2:6])
	r := b[6:]
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(r)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
			return 0, fmt.Errorf("token: %s is truncated or not minimally encoded", what)
		}
		r = r[n:]
		return v, nil
	}
	count, err := next("group count")
	if err != nil {
		return t, err
	}
	// Each group takes at least 3 bytes; this bounds the allocation by the input.
	if count > 65535 || count > uint64(len(r))/3 {
		return t, fmt.Errorf("token claims %d groups in %d bytes", count, len(r))
	}
	if t.Kind != filterType && count != 1 {
		return t, fmt.Errorf("a %s token holds %d groups, want 1", t.Kind, count)
	}
	t.Groups = make([]groupPos, 0, count)
	prev := uint64(0)
	for i := uint64(0); i < count; i++ {
		delta, err := next("group")
		if err != nil {
			return t, err
		}
		epoch, err := next("epoch")
		if err != nil {
			return t, err
		}
		seq, err := next("seq")
		if err != nil {
			return t, err
		}
		g := prev + delta
		if delta == 0 || g > 65535 {
			return t, fmt.Errorf("token: group %d out of order or out of range", g)
		}
		if (epoch == 0) != (seq == 0) {
			return t, fmt.Errorf("token: group %d at epoch %d seq %d (both or neither must be 0)", g, epoch, seq)
		}
		t.Groups = append(t.Groups, groupPos{Group: command.ServerID(g), Pos: position{Epoch: epoch, Seq: seq}})
		prev = g
	}
	if len(r) != 0 {
		return t, fmt.Errorf("token has %d bytes after its last group", len(r))
	}
	return t, nil
}

// check refuses a token issued for another filter (docs/protocol.md: bad_request).
func (t token) check(f filter) error {
	if t.Kind != f.kind || t.Hash != f.hash() {
		return fmt.Errorf("token was issued for another filter than %s", f)
	}
	if f.kind != filterType && t.Groups[0].Group != f.group {
		return fmt.Errorf("token names group %d, the filter %s is in group %d", t.Groups[0].Group, f, f.group)
	}
	return nil
}

// posOf returns the token's position in group g, (0,0) when absent (absent groups start
// at their first entry) or when there is no token.
func (t *token) posOf(g command.ServerID) position {
	if t == nil {
		return position{}
	}
	for _, gp := range t.Groups {
		if gp.Group == g {
			return gp.Pos
		}
	}
	return position{}
}
