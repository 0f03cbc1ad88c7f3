package statuspage

import (
	"context"
	"net/http"
	"time"
)

// RecheckEvery is how often WhileValid asks whether a stream's caller may still read it.
const RecheckEvery = 250 * time.Millisecond

// WhileValid wraps the stream's handler on a process with tokens, behind its token check:
// valid, asked every RecheckEvery while the stream runs, says whether the caller's token
// still works. A stream whose token was revoked or expired ends, as a WebSocket connection
// of that token is closed, and the page's reconnection meets the token check.
func WhileValid(h http.HandlerFunc, valid func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			tick := time.NewTicker(RecheckEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if !valid() {
						cancel()
						return
					}
				}
			}
		}()
		h(w, r.WithContext(ctx))
	}
}
