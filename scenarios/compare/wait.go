package main

import (
	"context"
	"fmt"
	"time"
)

// readyPoll is how often a readiness check is repeated.
const readyPoll = 100 * time.Millisecond

// waitFor repeats check until it succeeds, for at most timeout. It fails at once when one
// of procs exits (naming its log's tail) or ctx ends; after timeout it names what it
// waited for and check's last error.
func waitFor(ctx context.Context, timeout time.Duration, what string, procs []*proc, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %w", what, p.exitError())
			}
		}
		checkCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(checkCtx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s: %w", timeout, what, err)
		}
		sleepCtx(ctx, readyPoll)
	}
}
