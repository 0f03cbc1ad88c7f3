package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// resumeSettle is how long writers keep running once writes have resumed after a kill,
// so that a second stall right after the first success is part of the gap.
const resumeSettle = 2 * time.Second

// maxSuccessesPerWriter bounds the completion times a writer keeps during a failover run.
const maxSuccessesPerWriter = 5_000_000

// gapPoll is how often the run checks whether writes have resumed.
const gapPoll = 5 * time.Millisecond

// measureGap runs the writers in closed loops, calls kill after `before`, keeps writing
// until writes have run for resumeSettle after the first success following the kill (or
// until wait has passed without one), and measures the longest time without a
// successful write from the kill on.
func measureGap(ctx context.Context, writers []writer, before, wait, opTimeout time.Duration, kill func() error) (failoverResult, error) {
	res := failoverResult{Errors: map[string]uint64{}}
	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }
	var killAt, firstAfter atomic.Int64 // 0 until set
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	successes := make([][]int64, len(writers))
	tallies := make([]map[string]uint64, len(writers))
	deadline := time.Now().Add(before + wait + resumeSettle + opTimeout)
	var wg sync.WaitGroup
	for i, w := range writers {
		tallies[i] = map[string]uint64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxOpsPerWriter && runCtx.Err() == nil && time.Now().Before(deadline); n++ {
				opCtx, opCancel := context.WithTimeout(runCtx, opTimeout)
				err := w(opCtx)
				t := since()
				opCancel()
				if runCtx.Err() != nil {
					return
				}
				if err != nil {
					if killAt.Load() != 0 {
						countError(tallies[i], err)
					}
					sleepCtx(runCtx, errorBackoff)
					continue
				}
				if len(successes[i]) < maxSuccessesPerWriter {
					successes[i] = append(successes[i], t)
				}
				if k := killAt.Load(); k != 0 && t >= k {
					firstAfter.CompareAndSwap(0, t)
				}
			}
		}()
	}
	finish := func() {
		stopRun()
		wg.Wait()
	}

	sleepCtx(ctx, before)
	if err := ctx.Err(); err != nil {
		finish()
		return res, err
	}
	k := since()
	killAt.Store(k)
	if err := kill(); err != nil {
		finish()
		return res, fmt.Errorf("kill: %w", err)
	}
	tick := time.NewTicker(gapPoll)
	defer tick.Stop()
	var end int64
	for end == 0 {
		select {
		case <-ctx.Done():
			finish()
			return res, ctx.Err()
		case <-tick.C:
		}
		now := since()
		if f := firstAfter.Load(); f != 0 && now-f >= int64(resumeSettle) {
			end = now
		} else if f == 0 && now-k >= int64(wait) {
			end = now
		}
	}
	finish()

	var all []int64
	for i := range writers {
		all = append(all, successes[i]...)
		for msg, n := range tallies[i] {
			res.Errors[msg] += n
		}
	}
	g := longestGap(all, k, end)
	res.Resumed = g.Resumed
	res.GapMs = msOf(time.Duration(g.Gap))
	res.FirstAfterMs = msOf(time.Duration(g.FirstAfter))
	res.WritesBefore = uint64(g.Before)
	res.WritesAfter = uint64(g.After)
	if g.Before == 0 {
		return res, errors.New("no write succeeded before the kill")
	}
	if !g.Resumed {
		return res, fmt.Errorf("no write succeeded within %s of the kill", wait)
	}
	return res, nil
}
