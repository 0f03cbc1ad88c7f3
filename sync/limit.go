package resync

import (
	"context"
	"time"
)

// limiter is a token bucket in bytes holding at most a tenth of a second of rate, so a
// transfer (or its start) never bursts more than that past the cap.
type limiter struct {
	rate   float64 // bytes per second; 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
	clock  Clock
}

func newLimiter(bytesPerSec int64, clock Clock) *limiter {
	burst := float64(bytesPerSec) / 10
	return &limiter{rate: float64(bytesPerSec), burst: burst, tokens: burst, last: clock.Now(), clock: clock}
}

// wait takes n bytes' worth of tokens, sleeping until they are there.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return nil
	}
	now := l.clock.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return nil
	}
	d := time.Duration(-l.tokens / l.rate * float64(time.Second))
	return l.clock.Sleep(ctx, d)
}
