package main

import (
	"sort"
)

// loadResult is one system at one client count. Its JSON names are those of
// `sibyl bench --json`, which decodes straight into it.
type loadResult struct {
	Clients     int               `json:"clients"`
	DurationSec float64           `json:"durationSec"`
	Ops         uint64            `json:"ops"`
	OpsPerSec   float64           `json:"opsPerSec"`
	P50Ms       float64           `json:"p50Ms"`
	P99Ms       float64           `json:"p99Ms"`
	MaxMs       float64           `json:"maxMs"`
	Errors      map[string]uint64 `json:"errors"` // failed writes in the measured window, by message
	// The measured window (Unix nanoseconds) and what the whole machine spent in it per
	// acknowledged write (cost.go); 0 where it could not be read.
	FromUnixNano int64   `json:"fromUnixNano"`
	ToUnixNano   int64   `json:"toUnixNano"`
	CPUUsPerOp   float64 `json:"cpuUsPerOp,omitempty"`
	DiskKiBPerOp float64 `json:"diskKiBPerOp,omitempty"`
	Err          string  `json:"err,omitempty"`
}

// failoverResult is one failover run.
type failoverResult struct {
	Victim       string            `json:"victim"`  // what was killed
	Resumed      bool              `json:"resumed"` // a write succeeded after the kill
	GapMs        float64           `json:"gapMs"`   // longest time without a successful write after the kill
	FirstAfterMs float64           `json:"firstAfterMs"`
	WritesBefore uint64            `json:"writesBefore"` // successful writes before the kill
	WritesAfter  uint64            `json:"writesAfter"`
	Errors       map[string]uint64 `json:"errors"`
	Err          string            `json:"err,omitempty"`
}

// systemResult is everything measured of one system.
type systemResult struct {
	System    string           `json:"system"`
	Loads     []loadResult     `json:"loads"`
	Failovers []failoverResult `json:"failovers"`
	Err       string           `json:"err,omitempty"` // the system could not be measured to the end
}

// load returns the result at clients, if measured without error.
func (r *systemResult) load(clients int) (loadResult, bool) {
	if r == nil {
		return loadResult{}, false
	}
	for _, l := range r.Loads {
		if l.Clients == clients && l.Err == "" {
			return l, true
		}
	}
	return loadResult{}, false
}

// medianGapMs is the median gap of the runs in which writes resumed; false when none did
// or when any run did not resume (a median would hide that).
func (r *systemResult) medianGapMs() (float64, bool) {
	if r == nil || len(r.Failovers) == 0 {
		return 0, false
	}
	var gaps []float64
	for _, f := range r.Failovers {
		if f.Err != "" || !f.Resumed {
			return 0, false
		}
		gaps = append(gaps, f.GapMs)
	}
	return median(gaps), true
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// maxErrorKinds bounds the distinct messages an error tally keeps.
const maxErrorKinds = 16

// countError adds one failure under its message (shortened), or under "other" once
// maxErrorKinds messages are kept.
func countError(tally map[string]uint64, err error) {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "..."
	}
	if _, ok := tally[msg]; !ok && len(tally) >= maxErrorKinds {
		msg = "other"
	}
	tally[msg]++
}
