package main

import (
	"context"
	"sync"
	"time"
)

// writer does one durable write and returns when it is acknowledged or failed. Each writer
// is called by one goroutine, one write at a time.
type writer func(ctx context.Context) error

// errorBackoff keeps a writer whose writes fail at once (a process down) from spinning.
const errorBackoff = 5 * time.Millisecond

// maxOpsPerWriter bounds a writer's loop by count as well as by time.
const maxOpsPerWriter = 50_000_000

// runLoad runs every writer in a closed loop for warmup + duration and returns the writes
// that completed in the measured window. Each write is bounded by opTimeout.
func runLoad(ctx context.Context, writers []writer, warmup, duration, opTimeout time.Duration) (loadResult, error) {
	res := loadResult{Clients: len(writers), Errors: map[string]uint64{}}
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	hists := make([]latencyHist, len(writers))
	tallies := make([]map[string]uint64, len(writers))
	var wg sync.WaitGroup
	for i, w := range writers {
		tallies[i] = map[string]uint64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxOpsPerWriter && runCtx.Err() == nil; n++ {
				opCtx, opCancel := context.WithTimeout(runCtx, opTimeout)
				t0 := time.Now()
				err := w(opCtx)
				t1 := time.Now()
				opCancel()
				if runCtx.Err() != nil {
					return // cut off by the end of the run: neither a success nor a failure
				}
				inWindow := !t1.Before(measureFrom) && !t1.After(end)
				if err != nil {
					if inWindow {
						countError(tallies[i], err)
					}
					sleepCtx(runCtx, errorBackoff)
					continue
				}
				if inWindow {
					hists[i].record(t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	measured := min(max(time.Since(measureFrom), 0), duration)
	res.FromUnixNano, res.ToUnixNano = measureFrom.UnixNano(), measureFrom.Add(measured).UnixNano()
	var all latencyHist
	for i := range hists {
		all.merge(&hists[i])
		for msg, n := range tallies[i] {
			res.Errors[msg] += n
		}
	}
	res.Ops = all.total
	res.DurationSec = measured.Seconds()
	if measured > 0 {
		res.OpsPerSec = float64(all.total) / measured.Seconds()
	}
	res.P50Ms = all.quantileMs(0.50)
	res.P99Ms = all.quantileMs(0.99)
	res.MaxMs = msOf(all.max)
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
