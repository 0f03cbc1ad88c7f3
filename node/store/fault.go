package store

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// ErrDiskFault marks a write the store refused or could not make durable because its disk
// failed (full, or an I/O error). Nothing of the write was made durable or applied; the
// store keeps retrying the disk and takes writes again once it works (docs/storage.md,
// "Disk faults").
var ErrDiskFault = errors.New("disk fault")

// Health is what a store whose disk can fail and heal says about it (the durable store).
type Health interface {
	// Fault is why the store takes no write now, or nil while its disk works; changed is
	// closed at the next change.
	Fault() (fault error, changed <-chan struct{})
}

// DefaultHealEvery is how often a store with a disk fault tries its disk again.
const DefaultHealEvery = 250 * time.Millisecond

// isDiskError reports whether err came from the operating system (an errno: ENOSPC, EIO,
// EROFS, ...) rather than from the store's own checks.
func isDiskError(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// Fault reports the store's disk fault (Health).
func (s *walStore) Fault() (error, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault, s.faultChanged
}

// setFault records that the disk failed: writes are refused until heal succeeds. It
// returns the error for the write that found it.
func (s *walStore) setFault(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault == nil {
		close(s.faultChanged)
		s.faultChanged = make(chan struct{})
	}
	if errors.Is(err, ErrDiskFault) {
		s.fault = err
	} else {
		s.fault = fmt.Errorf("%w: %w", ErrDiskFault, err)
	}
	return s.fault
}

// faulted returns the disk fault, if any.
func (s *walStore) faulted() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// heal tries the disk again: the log is repaired (a new segment from its last durable
// position, with the lazy records it kept) and a flush writes the layers to bbolt. When
// both succeed the store takes writes again.
func (s *walStore) heal() {
	if err := s.log.Repair(); err != nil {
		s.setFault(err)
		return
	}
	if err := s.flush(s.opts.KeepFlushes); err != nil {
		s.setFault(err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault != nil {
		s.fault = nil
		close(s.faultChanged)
		s.faultChanged = make(chan struct{})
	}
}
