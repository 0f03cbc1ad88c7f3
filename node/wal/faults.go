package wal

import (
	"sync"
	"syscall"
)

// FaultPoint is a place where a node's store touches the disk and a test can make it fail.
type FaultPoint int

const (
	// FaultWrite fails the log's write of a batch of records (nothing of it is written).
	FaultWrite FaultPoint = iota
	// FaultSync fails the log's fdatasync after its write: the bytes may or may not be on
	// disk, as after a real failed fsync.
	FaultSync
	// FaultCreate fails the creation of a segment (its preallocation, as on a full disk).
	FaultCreate
	// FaultCommit fails the state store's bbolt commit of a flush (node/store).
	FaultCommit
	faultPoints
)

// The errors a full or broken disk answers with.
var (
	ErrNoSpace = syscall.ENOSPC
	ErrIO      = syscall.EIO
)

// Faults injects disk errors at chosen points, as a full or failing disk would, for tests
// of the log, the store and whole nodes. The zero value injects nothing; it is safe for
// concurrent use, and one Faults may serve a log and the store above it.
type Faults struct {
	mu   sync.Mutex
	errs [faultPoints]error
	left [faultPoints]int // > 0: the injected error goes after this many more failures
	hits [faultPoints]int
}

// Set makes every operation at p fail with err from now on (nil: succeed again).
func (f *Faults) Set(p FaultPoint, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[p], f.left[p] = err, 0
}

// SetFor makes the next n operations at p fail with err, then succeed again.
func (f *Faults) SetFor(p FaultPoint, err error, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[p], f.left[p] = err, n
}

// Heal makes every point succeed again: the disk works.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs, f.left = [faultPoints]error{}, [faultPoints]int{}
}

// Hits counts the operations at p that failed.
func (f *Faults) Hits(p FaultPoint) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[p]
}

// Check returns the error injected at p (nil when none is, or f is nil).
func (f *Faults) Check(p FaultPoint) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[p]; err != nil {
		f.hits[p]++
		if f.left[p] > 0 {
			if f.left[p]--; f.left[p] == 0 {
				f.errs[p] = nil
			}
		}
		return err
	}
	return nil
}
