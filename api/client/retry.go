package client

import (
	"context"
	"errors"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Backoff bounds of DoRetry.
const (
	retryBase = 25 * time.Millisecond
	retryCap  = 2 * time.Second
)

// DoRetry is Do, repeated while the error is retryable and ctx lasts, for requests that
// are safe to repeat: reads, and writes that carry a key (a repeat with the same key
// returns the first result, so an unknown outcome resolves). A write without a key is
// sent once, since repeating it could apply it twice. Waits between attempts grow
// exponentially up to 2 s, with jitter so that clients that failed together do not
// retry together. When ctx ends, the last error is returned.
func (c *Client) DoRetry(ctx context.Context, req *command.Request) (*command.Reply, error) {
	if req == nil || !repeatable(req) {
		return c.Do(ctx, req)
	}
	for attempt := 0; ; attempt++ {
		rep, err := c.Do(ctx, req)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return rep, err
		}
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// repeatable reports whether sending req twice is harmless.
func repeatable(req *command.Request) bool {
	if command.IsWrite(req.Op) {
		return req.Key != ""
	}
	switch req.Op {
	case command.OpGet, command.OpList, command.OpStatus:
		return true
	}
	return false
}

func retryable(err error) bool {
	var e *command.Error
	return errors.As(err, &e) && e.Code.Retryable()
}

// backoff is the wait before retry number attempt+1: half of the capped exponential step
// plus a random part of the other half.
func (c *Client) backoff(attempt int) time.Duration {
	d := retryCap
	if attempt < 16 && retryBase<<attempt < retryCap {
		d = retryBase << attempt
	}
	c.rngMu.Lock()
	jitter := time.Duration(c.rng.Int64N(int64(d/2) + 1))
	c.rngMu.Unlock()
	return d/2 + jitter
}
