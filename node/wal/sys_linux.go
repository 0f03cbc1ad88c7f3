package wal

import (
	"os"
	"syscall"
	"unsafe"
)

// preallocate reserves size bytes so appends do not grow the file: an fdatasync then has
// no size change to write. Reserving (unwritten extents) rather than writing zeros matters:
// pages filled by large writes are cached as large folios, and a later 1 KiB append then
// dirties, and each fdatasync writes, a whole folio (measured here: about 1 MiB written per
// 1 KiB append and sync, against 5 KiB on reserved space).
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if err == syscall.ENOTSUP || err == syscall.EOPNOTSUPP {
		return f.Truncate(size)
	}
	return err
}

// fdatasync makes f's data durable. It is a raw system call: the runtime does not see
// it, so it neither hands this thread's scheduler slot to another thread when the call
// outlasts a tick of its monitor nor wakes that monitor every 20 µs to check. Both cost more
// than they return for a call that a group commit makes about once per millisecond per
// node: measured with sibyl bench (4 nodes with one slot each, 64 clients, 2 CPUs, three
// interleaved pairs), node CPU per write fell from 217-231 µs to 166-200 µs and p99 from
// 30-34 ms to 24-28 ms. The slot stays busy for the fsync instead; with one slot per node
// that still beats two (cmd/sibyl's childEnv has the figures). A stop-the-world pause of
// the garbage collector waits for a sync in flight.
func fdatasync(f *os.File) error {
	fd := f.Fd()
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return e
		}
	}
}

// openDirect opens path for direct, synchronous writes (O_DIRECT|O_DSYNC). Filesystems
// without direct I/O (tmpfs) refuse it.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT|syscall.O_DSYNC, 0)
}

// pwriteDurable writes b at off on a handle opened by openDirect: the data is on the disk
// when it returns. Like fdatasync it is a raw system call that keeps the scheduler slot
// while the disk works, for the same reason (fdatasync's comment).
func pwriteDurable(f *os.File, b []byte, off int64) error {
	fd := f.Fd()
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITE64, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		switch e {
		case 0:
			if n == 0 {
				return syscall.EIO
			}
			b = b[n:]
			off += int64(n)
		case syscall.EINTR:
		default:
			return e
		}
	}
	return nil
}
