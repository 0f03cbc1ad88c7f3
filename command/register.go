package command

import (
	"fmt"
	"time"
)

// Bounds a main puts on the log it keeps for a copy being registered (node flags of the
// same names, docs/register-sibling.md).
const (
	BoundRegisterHoldBytes = "register-hold-bytes"
	BoundRegisterHoldTime  = "register-hold-time"
)

// RegisterAbort is a main's typed abort of a registration: keeping every entry after the
// learner's position until it votes would pass Bound. Limit and Held are bytes for
// BoundRegisterHoldBytes and milliseconds for BoundRegisterHoldTime.
type RegisterAbort struct {
	Bound string `json:"bound"`
	Limit uint64 `json:"limit"`
	Held  uint64 `json:"held"`
}

// Err is the error registerSibling of node in group server fails with: rate_limited when
// the group wrote more than the bytes bound before the copy caught up, timeout when the
// copy did not catch up within the time bound. Both say which bound, and neither is worth
// repeating at once: the same write rate meets the same bound.
func (a *RegisterAbort) Err(server, node uint16) *Error {
	switch a.Bound {
	case BoundRegisterHoldBytes:
		e := Errorf(CodeRateLimited, "registerSibling of node %d in group %d aborted: the main kept %s of log for the copy, over --%s %s; the group is written faster than the copy catches up",
			node, server, byteSize(a.Held), a.Bound, byteSize(a.Limit))
		e.RetryAfterMs = 60_000
		return e
	case BoundRegisterHoldTime:
		return Errorf(CodeTimeout, "registerSibling of node %d in group %d aborted: the copy did not catch up within --%s %v (held %v)",
			node, server, a.Bound, time.Duration(a.Limit)*time.Millisecond, time.Duration(a.Held)*time.Millisecond)
	}
	return Errorf(CodeUnavailable, "registerSibling of node %d in group %d aborted by the main (%s)", node, server, a.Bound)
}

// byteSize writes n bytes in the largest binary unit that keeps it at least 1.
func byteSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", f, units[i], n)
}
