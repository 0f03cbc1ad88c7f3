package command

import (
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
)

// ServerID names a node and the group of resources that node created (1..65535).
type ServerID uint16

// RID is a resource ID: "<serverId>-<ULID>".
type RID struct {
	Server ServerID
	ID     ulid.ULID
}

func (r RID) String() string { return strconv.FormatUint(uint64(r.Server), 10) + "-" + r.ID.String() }

// ParseRID accepts only the canonical form: a decimal server ID 1..65535 without leading
// zeros, "-", and an upper-case 26-character ULID.
func ParseRID(s string) (RID, error) {
	i := strings.IndexByte(s, '-')
	if i <= 0 || i > 5 || len(s)-i-1 != ulid.EncodedSize {
		return RID{}, Errorf(CodeBadRequest, "rid %q is not <serverId>-<ULID>", s)
	}
	sid, err := ParseServerID(s[:i])
	if err != nil {
		return RID{}, Errorf(CodeBadRequest, "rid %q: %v", s, err.Message)
	}
	u := s[i+1:]
	if strings.ToUpper(u) != u {
		return RID{}, Errorf(CodeBadRequest, "rid %q: ULID must be upper case", s)
	}
	id, perr := ulid.ParseStrict(u)
	if perr != nil {
		return RID{}, Errorf(CodeBadRequest, "rid %q: %v", s, perr)
	}
	return RID{Server: sid, ID: id}, nil
}

// ParseServerID parses a canonical decimal server ID 1..65535.
func ParseServerID(s string) (ServerID, *Error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, Errorf(CodeBadRequest, "server ID %q is not canonical", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, Errorf(CodeBadRequest, "server ID %q is not in 1..65535", s)
	}
	return ServerID(n), nil
}

// GroupOf returns the server ID encoded in a canonical rid.
func GroupOf(rid string) (ServerID, error) {
	r, err := ParseRID(rid)
	if err != nil {
		return 0, err
	}
	return r.Server, nil
}
