package command

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// IDGen makes the rids of one group's new resources. Its IDs strictly increase, even when
// the clock steps back or many IDs share a millisecond, so that a group's rids sort in
// creation order on one main. It is safe for concurrent use.
type IDGen struct {
	server ServerID

	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
	lastMs  uint64
}

// NewIDGen returns a generator of rids of group server drawing randomness from entropy
// (crypto/rand when nil; pass a seeded source for reproducible tests).
func NewIDGen(server ServerID, entropy io.Reader) *IDGen {
	if entropy == nil {
		entropy = crand.Reader
	}
	return &IDGen{server: server, entropy: ulid.Monotonic(entropy, 0)}
}

// Next returns a new rid timestamped now, or just after the previous one when now is
// earlier. It panics only when the entropy source fails.
func (g *IDGen) Next(now time.Time) RID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := max(unixMs(now), g.lastMs)
	for {
		id, err := ulid.New(ms, g.entropy)
		if err == nil {
			g.lastMs = ms
			return RID{Server: g.server, ID: id}
		}
		// Incrementing the random part overflowed within this millisecond: move on to
		// the next one, which starts from fresh entropy and still sorts after.
		if errors.Is(err, ulid.ErrMonotonicOverflow) && ms < ulid.MaxTime() {
			ms++
			continue
		}
		panic(fmt.Sprintf("command: making a rid for group %d: %v", g.server, err))
	}
}

// unixMs is now in ULID milliseconds, clamped to the range a ULID can hold.
func unixMs(now time.Time) uint64 {
	ms := now.UnixMilli()
	switch {
	case ms < 0:
		return 0
	case uint64(ms) > ulid.MaxTime():
		return ulid.MaxTime()
	}
	return uint64(ms)
}
