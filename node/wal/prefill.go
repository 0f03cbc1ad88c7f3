package wal

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Prefill. A new segment is preallocated space that was never written (unwritten extents).
// A direct, synchronous write into such space must also change the file's extent map and
// write the inode before it is durable: three disk round trips (data, inode, cache flush)
// where a write into blocks written before needs two. The filler writes zeros ahead of the
// log's write position, a chunk at a time with direct I/O, so the log's own writes land on
// written blocks. A reused segment (recycle.go) was written in its previous life, as far
// as that life got: all but its last records' worth for a segment that filled up, less for
// one that was current when its node restarted. The filler leaves reused segments alone;
// what their previous life did not reach takes the slower writes.
//
// Measured with sibyl bench (4 nodes on 2 CPUs, 64 clients, three interleaved pairs, segments
// zero-filled against preallocated): 8,395 against 6,795, 7,964 against 7,895 and 8,581
// against 8,051 writes/s; node CPU per write 147 against 196, 152 against 160 and 137
// against 149 µs; 15 % fewer bytes to the disk per write.
//
// The filler and the leader never write the same block: below filled, only the leader
// writes; at and after it, only the filler, and the leader only while holding mu, which the
// filler holds for each chunk it writes. The leader's writes that stay below filled (almost
// all of them) take no lock.

// Variables, read when a log opens, so that tests can make the filler race the log's
// writes on small segments.
var (
	fillChunk     int64 = 1 << 20 // bytes of zeros per write
	fillLookahead int64 = 4 << 20 // how far ahead of the write position the filler keeps
)

// filler writes zeros ahead of the log's write position in the current segment.
type filler struct {
	mu     sync.Mutex
	f      *os.File     // the current segment's direct handle; nil: nothing to fill
	size   int64        // of the current segment
	filled atomic.Int64 // every block below it was written in the current segment
	pos    atomic.Int64 // the leader's write position

	chunk, lookahead int64 // fillChunk and fillLookahead when the log opened

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func startFiller() *filler {
	fl := &filler{chunk: fillChunk, lookahead: fillLookahead,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go fl.run()
	return fl
}

// reset points the filler at a new current segment: f (its direct handle, or nil when the
// log writes buffered), whose blocks below filled are written already.
func (fl *filler) reset(f *os.File, size, filled int64) {
	fl.mu.Lock()
	fl.f, fl.size = f, size
	fl.filled.Store(filled)
	fl.pos.Store(0)
	fl.mu.Unlock()
	fl.poke()
}

// close stops the filler and waits for a chunk in flight.
func (fl *filler) close() {
	close(fl.stop)
	<-fl.done
}

func (fl *filler) poke() {
	select {
	case fl.wake <- struct{}{}:
	default:
	}
}

// write is the leader's direct write of b at off (whole blocks): through the filler's lock
// when it reaches blocks the filler may be writing.
func (fl *filler) write(f *os.File, b []byte, off int64) error {
	end := off + int64(len(b))
	if end <= fl.filled.Load() {
		err := directWrite(f, b, off)
		fl.moved(end)
		return err
	}
	fl.mu.Lock()
	err := directWrite(f, b, off)
	if err == nil && end > fl.filled.Load() {
		fl.filled.Store(end)
	}
	fl.mu.Unlock()
	fl.moved(end)
	return err
}

// moved records the leader's position and wakes the filler when it is not far enough ahead.
func (fl *filler) moved(pos int64) {
	fl.pos.Store(pos)
	if fl.filled.Load()-pos < fl.lookahead/2 {
		fl.poke()
	}
}

func (fl *filler) run() {
	defer close(fl.done)
	zeros := alignedBuffer(int(fl.chunk))
	for {
		select {
		case <-fl.stop:
			return
		case <-fl.wake:
		}
		for fl.fillNext(zeros) {
			select {
			case <-fl.stop:
				return
			default:
			}
		}
	}
}

// fillNext writes the next chunk of zeros if the filler is not far enough ahead, and
// reports whether it wrote one. A failed write ends filling this segment: the log's own
// writes do not need it.
func (fl *filler) fillNext(zeros []byte) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	from := fl.filled.Load()
	if fl.f == nil || from >= fl.size || from-fl.pos.Load() >= fl.lookahead {
		return false
	}
	n := min(int64(len(zeros)), fl.size-from)
	if err := pwriteSlow(fl.f, zeros[:n], from); err != nil {
		fl.f = nil
		return false
	}
	fl.filled.Store(from + n)
	return true
}

// pwriteSlow writes b at off on a direct handle as an ordinary system call, which lets the
// runtime run other goroutines on this thread's scheduler slot while the disk works: the
// filler's writes are few and long, unlike the log's (pwriteDurable).
func pwriteSlow(f *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := syscall.Pwrite(int(f.Fd()), b, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
