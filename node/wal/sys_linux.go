package wal

import (
	"os"
	"syscall"
)

// preallocate reserves size bytes so appends do not grow the file: an fdatasync then has
// no size change to write.
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if err == syscall.ENOTSUP || err == syscall.EOPNOTSUPP {
		return f.Truncate(size)
	}
	return err
}

func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
