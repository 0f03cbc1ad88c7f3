package resync

import (
	"context"
	"time"
)

// limiter is a token bucket in bytes: up to one second of rate may accumulate, so a
// transfer that was waiting on acks does not burst more than that.
type limiter struct {
	rate   float64 // bytes per second; 0: unlimited
	tokens float64
	last   time.Time
	clock  Clock
}

func newLimiter(bytesPerSec int64, clock Clock) *limiter {
	return &limiter{rate: float64(bytesPerSec), tokens: float64(bytesPerSec), last: clock.Now(), clock: clock}
}

// wait takes n bytes' worth of tokens, sleeping until they are there.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return nil
	}
	now := l.clock.Now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return nil
	}
	d := time.Duration(-l.tokens / l.rate * float64(time.Second))
	return l.clock.Sleep(ctx, d)
}
