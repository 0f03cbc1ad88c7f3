package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// DefaultSegmentBytes is the preallocated size of a segment; a record larger than that gets
// a segment of its own size.
const DefaultSegmentBytes = 64 << 20

// Options configure a Log.
type Options struct {
	// SegmentBytes is the size of each new segment (default DefaultSegmentBytes).
	SegmentBytes int64
	// Faults, when set, fail the log's writes, syncs and segment creations where a test
	// chooses, as a full or broken disk would.
	Faults *Faults
	// Buffered writes records through the page cache and makes them durable with
	// fdatasync, instead of with direct, synchronous writes (direct.go). A log on a
	// filesystem without direct I/O writes buffered whatever this says.
	Buffered bool
	// GatherDelay bounds how long a write waits for another record when other appenders
	// are active (gather.go); 0 means DefaultGatherDelay, a negative value no wait.
	GatherDelay time.Duration
}

// ErrClosed is returned by Append on a closed log.
var ErrClosed = errors.New("wal is closed")

// Stats count what the log did since Open. Direct says whether it now writes with direct,
// synchronous writes (each of them counts as a write and a sync).
type Stats struct {
	Records, Writes, Syncs, Bytes uint64
	Direct                        bool
	GatherWaits                   uint64 // writes that first waited for another record (gather.go)
}

// Log is an open write-ahead log. Append is safe for concurrent use.
//
// Group commit: the first appender to find no write in flight becomes the leader; it
// writes every record queued so far with one write and one fdatasync, then wakes the
// others. Appenders that arrive meanwhile queue and are written by the next leader.
//
// A failed write, sync or segment creation fails the log (Fault) until Repair succeeds:
// every Append waiting for that write, or arriving meanwhile, fails, and its record is
// dropped; records appended with AppendLazy (already counted on) are kept and written by
// Repair. Repair never writes over bytes whose fate a failed sync left unknown: it starts a
// new segment at the last durable position, and Open reads a segment only up to where the
// next one starts (docs/storage.md, "Disk faults").
type Log struct {
	dir  string
	opts Options

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte // framed records not yet written
	lazy    []bool // per record of pending: appended with AppendLazy
	spare   []byte // the buffer of the previous write, reused
	end     uint64 // LSN after the last queued record
	synced  uint64 // LSN up to which everything is durable
	writing bool
	// contended: the last write carried records of several appenders, or records queued
	// while it was in flight (gather.go)
	contended bool
	gathered  chan struct{} // while the leader gathers: closed by the next append (gather.go)
	fault     error         // set by a failed write; cleared by Repair
	faults    uint64        // failed writes so far: a waiting appender learns its record was dropped
	lastErr   error         // the error of the last failed write
	closed    bool
	stats     Stats

	// Owned by the leader (writing == true) or by Open/Close.
	cur      *os.File
	curStart uint64
	curOff   int64 // next write offset in cur
	curSize  int64
	dcur     *os.File // cur opened for direct writes; nil when writing buffered
	block    []byte   // direct writes: the partial block at curOff, then scratch (direct.go)

	segMu  sync.Mutex
	segs   []segment // every segment on disk, the current one last
	spares []string  // retired segment files kept for reuse (recycle.go)
}

// Open opens the log in dir (creating it), checks its segments and calls replay with every
// intact record in LSN order (rec is valid only during the call). New records are written
// to a new segment that starts where the intact records end.
func Open(dir string, opts Options, replay func(lsn uint64, rec []byte) error) (*Log, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open wal %s: %w", dir, err)
	}
	segs, spares, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	var end uint64
	var kept []segment
	for i, seg := range segs {
		if i > 0 && seg.start != end {
			return nil, fmt.Errorf("open wal %s: segment %s starts at LSN %d but the one before it ends at %d",
				dir, seg.path, seg.start, end)
		}
		limit := uint64(0)
		if i+1 < len(segs) {
			limit = segs[i+1].start
		}
		e, err := scanSegment(seg, limit, replay)
		if errors.Is(err, errNoHeader) && i == len(segs)-1 {
			// Created but never written: a crash between creating and using it.
			if err := os.Remove(seg.path); err != nil {
				return nil, fmt.Errorf("open wal %s: remove empty segment: %w", dir, err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open wal %s: %w", dir, err)
		}
		end = e
		kept = append(kept, seg)
	}
	l := &Log{dir: dir, opts: opts, end: end, synced: end, segs: kept, spares: spares}
	l.cond = sync.NewCond(&l.mu)
	if err := l.roll(end, 0); err != nil {
		return nil, err
	}
	return l, nil
}

// roll starts a new segment at LSN start, big enough for need bytes of records. Called by
// Open or by the leader.
func (l *Log) roll(start uint64, need int64) error {
	size := max(l.opts.SegmentBytes, need+segHeader)
	l.segMu.Lock()
	if n := len(l.segs); n > 0 && l.segs[n-1].start == start && l.cur == nil {
		// The last segment holds no record (Open found it so): replace the file. It is
		// not kept as a spare: a new segment starts at the same LSN, where the records
		// left in it (a torn write's later blocks) would check.
		if err := os.Remove(l.segs[n-1].path); err != nil {
			l.segMu.Unlock()
			return fmt.Errorf("wal: replace empty segment: %w", err)
		}
		l.segs = l.segs[:n-1]
	}
	l.segMu.Unlock()
	if err := l.opts.Faults.Check(FaultCreate); err != nil {
		return fmt.Errorf("create wal segment at %d: %w", start, err)
	}
	f, path, err := l.reuseSpare(start, size)
	if err != nil {
		return err
	}
	if f == nil {
		if f, err = createSegment(l.dir, start, size); err != nil {
			return err
		}
		path = f.Name()
	}
	l.closeCurrent()
	l.cur, l.curStart, l.curOff, l.curSize = f, start, segHeader, size
	if !l.opts.Buffered {
		l.startDirect(path, segmentHeader(start))
	}
	l.segMu.Lock()
	l.segs = append(l.segs, segment{start: start, path: path})
	l.segMu.Unlock()
	return nil
}

// Append adds rec to the log and returns its LSN once it is durable.
func (l *Log) Append(rec []byte) (uint64, error) {
	return l.append(rec, true)
}

// AppendLazy adds rec to the log and returns at once: the record becomes durable with the
// next Append (which writes every record queued before it) or Close. A crash before that
// loses it and every record after it, never one before it.
func (l *Log) AppendLazy(rec []byte) (uint64, error) {
	return l.append(rec, false)
}

func (l *Log) append(rec []byte, wait bool) (uint64, error) {
	if len(rec) == 0 {
		return 0, errors.New("wal: empty record")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.fault != nil {
		return 0, l.fault
	}
	l.pending = appendRecord(l.pending, l.end, rec)
	l.lazy = append(l.lazy, !wait)
	l.end += uint64(recordHeader + len(rec))
	lsn := l.end
	l.stats.Records++
	if l.gathered != nil {
		close(l.gathered)
		l.gathered = nil
	}
	if !wait {
		return lsn, nil
	}
	faults := l.faults
	for l.synced < lsn {
		if l.faults != faults {
			// The write that carried the record failed, and the record was dropped.
			return 0, l.lastErr
		}
		if l.closed {
			return 0, ErrClosed
		}
		if l.writing {
			l.cond.Wait()
			continue
		}
		l.lead()
	}
	return lsn, nil
}

// lead writes and syncs everything pending. Called with l.mu held; returns with it held.
func (l *Log) lead() {
	l.writing = true
	// Gather: let goroutines that are already runnable (often the groups the last write
	// just woke) queue their records first, so that this write carries them too instead
	// of leaving them for the next fsync; under load, wait a little longer (gather.go).
	// Appenders arriving meanwhile see writing and wait.
	if wait := l.gatherDelay(); wait > 0 {
		l.stats.GatherWaits++
		l.gather(wait)
	}
	l.mu.Unlock()
	runtime.Gosched()
	l.mu.Lock()
	buf, lazy := l.pending, l.lazy
	upTo := l.end
	l.pending, l.lazy = l.spare[:0], nil
	l.mu.Unlock()

	err := l.write(buf)

	l.mu.Lock()
	l.writing = false
	l.contended = len(l.pending) > 0 || waitedFor(lazy) > 1
	if err != nil {
		l.failed(err, buf, lazy)
	} else {
		l.spare = buf
		l.synced = upTo
		l.stats.Writes++
		l.stats.Syncs++
		l.stats.Bytes += uint64(len(buf))
	}
	l.cond.Broadcast()
}

// failed records a failed write of buf: the log takes nothing more until Repair. Of the
// records in buf and those queued since, the ones appended with Append are dropped (their
// appenders get err) and the lazy ones kept for Repair to write; LSNs from the last durable
// position on are counted again over what is kept. Call with l.mu held.
func (l *Log) failed(err error, buf []byte, lazy []bool) {
	kept := keepLazy(nil, buf, lazy)
	kept = keepLazy(kept, l.pending, l.lazy)
	rekeyRecords(kept, l.synced) // they are written again from the last durable position
	l.pending, l.lazy = kept, nil
	for range countRecords(kept) {
		l.lazy = append(l.lazy, true)
	}
	l.end = l.synced + uint64(len(kept))
	l.fault = fmt.Errorf("wal %s: %w", l.dir, err)
	l.lastErr = l.fault
	l.faults++
}

// keepLazy appends to dst the framed records of buf whose flag in lazy is set.
func keepLazy(dst, buf []byte, lazy []bool) []byte {
	for i := 0; len(buf) > 0; i++ {
		n := recordHeader + int(binary.BigEndian.Uint32(buf))
		if lazy[i] {
			dst = append(dst, buf[:n]...)
		}
		buf = buf[n:]
	}
	return dst
}

func countRecords(buf []byte) int {
	k := 0
	for len(buf) > 0 {
		buf = buf[recordHeader+int(binary.BigEndian.Uint32(buf)):]
		k++
	}
	return k
}

// Fault is why the log takes no record now (a failed write, sync or segment creation that
// Repair has not yet overcome), or nil.
func (l *Log) Fault() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fault
}

// Repair tries to bring a failed log back: it abandons the segment the failed write went
// to at the last durable position (its bytes after that may or may not be on disk, and a
// later fsync would not tell: a failed fsync can drop dirty pages and report success
// next time), starts a new segment there, and writes and syncs the kept lazy records into
// it. It returns nil once the log takes records again, or why it still cannot; call it
// again later. A log that has not failed is left alone.
func (l *Log) Repair() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.writing {
		l.cond.Wait()
	}
	if l.closed {
		return ErrClosed
	}
	if l.fault == nil {
		return nil
	}
	// While fault is set no append queues, so pending is exactly the kept records.
	l.writing = true
	buf, start, upTo := l.pending, l.synced, l.end
	l.mu.Unlock()

	err := l.restartAt(start)
	if err == nil {
		err = l.write(buf)
	}

	l.mu.Lock()
	l.writing = false
	if err != nil {
		l.fault = fmt.Errorf("wal %s: repair: %w", l.dir, err)
		l.lastErr = l.fault
	} else {
		l.pending, l.lazy = l.spare[:0], nil
		l.synced, l.fault = upTo, nil
		l.stats.Writes++
		l.stats.Syncs++
		l.stats.Bytes += uint64(len(buf))
	}
	l.cond.Broadcast()
	return err
}

// restartAt closes the current segment and removes every segment starting at or after
// start (nothing in them is durable as far as the log knows), then starts a new one at
// start. Called by the leader.
func (l *Log) restartAt(start uint64) error {
	l.closeCurrent()
	l.segMu.Lock()
	for n := len(l.segs); n > 0 && l.segs[n-1].start >= start; n = len(l.segs) {
		if err := os.Remove(l.segs[n-1].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.segMu.Unlock()
			return fmt.Errorf("remove abandoned wal segment %s: %w", l.segs[n-1].path, err)
		}
		l.segs = l.segs[:n-1]
	}
	l.segMu.Unlock()
	// createSegment syncs the directory: the removals are durable with the new segment.
	return l.roll(start, 0)
}

// write puts buf (whole records) at the end of the current segment, rolling to new ones
// where it does not fit (records never span segments), and syncs.
func (l *Log) write(buf []byte) error {
	for len(buf) > 0 {
		fit := 0
		for fit < len(buf) {
			n := recordHeader + int(binary.BigEndian.Uint32(buf[fit:]))
			if l.curOff+int64(fit+n) > l.curSize {
				break
			}
			fit += n
		}
		if fit == 0 {
			// Not even the next record fits: it opens a new segment, sized for it if large.
			n := recordHeader + int(binary.BigEndian.Uint32(buf))
			if err := l.sync(); err != nil {
				return err
			}
			if err := l.roll(l.curStart+uint64(l.curOff-segHeader), int64(n)); err != nil {
				return err
			}
			continue
		}
		if err := l.opts.Faults.Check(FaultWrite); err != nil {
			return fmt.Errorf("write %d bytes to %s: %w", fit, l.cur.Name(), err)
		}
		direct := l.dcur != nil
		if direct {
			err := l.writeDirect(buf[:fit])
			if errors.Is(err, syscall.EINVAL) {
				// The filesystem opened the file for direct I/O but refuses these writes
				// (an alignment it wants larger): write buffered from here on.
				l.stopDirect()
				direct = false
			} else if err != nil {
				return err
			}
		}
		if !direct {
			if _, err := l.cur.WriteAt(buf[:fit], l.curOff); err != nil {
				return err
			}
		}
		l.curOff += int64(fit)
		buf = buf[fit:]
	}
	return l.sync()
}

func (l *Log) sync() error {
	if err := l.opts.Faults.Check(FaultSync); err != nil {
		return fmt.Errorf("fdatasync %s: %w", l.cur.Name(), err)
	}
	if l.dcur != nil {
		return nil // a direct write is durable when it returns
	}
	return fdatasync(l.cur)
}

// closeCurrent closes the current segment's handles and returns the error of closing the
// file itself. Called by the leader or Close.
func (l *Log) closeCurrent() error {
	if l.dcur != nil {
		l.dcur.Close()
		l.dcur = nil
	}
	if l.cur == nil {
		return nil
	}
	err := l.cur.Close()
	l.cur = nil
	return err
}

// End is the LSN after the last record appended (durable or not yet).
func (l *Log) End() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// Stats returns the counts since Open.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Direct = !l.opts.Buffered
	return st
}

// TruncateBefore removes every segment whose records all lie at or below lsn (the caller
// has stored their effect elsewhere), keeping a few of their files for reuse (recycle.go).
// The current segment is never removed.
func (l *Log) TruncateBefore(lsn uint64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	removed := 0
	var spares []string
	var err error
	for removed+1 < len(l.segs) && l.segs[removed+1].start <= lsn {
		var spare string
		if spare, err = l.retire(l.segs[removed], len(spares)); err != nil {
			err = fmt.Errorf("wal: remove segment %s: %w", l.segs[removed].path, err)
			break
		}
		if spare != "" {
			spares = append(spares, spare)
		}
		removed++
	}
	l.segs = l.segs[removed:]
	if removed == 0 {
		return err
	}
	if serr := syncDir(l.dir); serr != nil {
		return serr // the spares are not reused: their renames may not be durable
	}
	l.spares = append(l.spares, spares...)
	return err
}

// Segments returns how many segment files the log has.
func (l *Log) Segments() int {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	return len(l.segs)
}

// Close writes what is queued, waits for a write in flight and closes the current segment;
// Append fails afterwards. A failed log writes nothing more: its kept lazy records are
// lost, as a crash would lose them.
func (l *Log) Close() error {
	l.mu.Lock()
	for l.writing {
		l.cond.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	if len(l.pending) > 0 && l.fault == nil {
		l.lead()
	}
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.closeCurrent()
}
