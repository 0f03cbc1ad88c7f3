package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
)

// DefaultSegmentBytes is the preallocated size of a segment; a record larger than that gets
// a segment of its own size.
const DefaultSegmentBytes = 64 << 20

// Options configure a Log.
type Options struct {
	// SegmentBytes is the size of each new segment (default DefaultSegmentBytes).
	SegmentBytes int64
	// Hooks, when set, are called around the log's disk writes, so tests can fail them.
	Hooks *Hooks
}

// Hooks let tests inject disk faults: a hook that returns an error makes the write (or
// sync) fail with it, as a full or broken disk would.
type Hooks struct {
	BeforeWrite func() error
	BeforeSync  func() error
}

// ErrClosed is returned by Append on a closed log.
var ErrClosed = errors.New("wal is closed")

// Stats count what the log did since Open.
type Stats struct {
	Records, Writes, Syncs, Bytes uint64
}

// Log is an open write-ahead log. Append is safe for concurrent use.
//
// Group commit: the first appender to find no write in flight becomes the leader; it
// writes every record queued so far with one write and one fdatasync, then wakes the
// others. Appenders that arrive meanwhile queue and are written by the next leader.
type Log struct {
	dir  string
	opts Options

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte // framed records not yet written
	spare   []byte // the buffer of the previous write, reused
	end     uint64 // LSN after the last queued record
	synced  uint64 // LSN up to which everything is durable
	writing bool
	err     error // sticky: once a write or sync failed, the log takes nothing more
	closed  bool
	stats   Stats

	// Owned by the leader (writing == true) or by Open/Close.
	cur      *os.File
	curStart uint64
	curOff   int64 // next write offset in cur
	curSize  int64

	segMu sync.Mutex
	segs  []segment // every segment on disk, the current one last
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
	segs, err := listSegments(dir)
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
		e, err := scanSegment(seg, replay)
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
	l := &Log{dir: dir, opts: opts, end: end, synced: end, segs: kept}
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
		// The last segment holds no record (Open found it so): replace the file.
		if err := os.Remove(l.segs[n-1].path); err != nil {
			l.segMu.Unlock()
			return fmt.Errorf("wal: replace empty segment: %w", err)
		}
		l.segs = l.segs[:n-1]
	}
	l.segMu.Unlock()
	f, err := createSegment(l.dir, start, size)
	if err != nil {
		return err
	}
	if l.cur != nil {
		l.cur.Close()
	}
	l.cur, l.curStart, l.curOff, l.curSize = f, start, segHeader, size
	l.segMu.Lock()
	l.segs = append(l.segs, segment{start: start, path: f.Name()})
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
	if l.err != nil {
		return 0, l.err
	}
	if l.closed {
		return 0, ErrClosed
	}
	l.pending = appendRecord(l.pending, rec)
	l.end += uint64(recordHeader + len(rec))
	lsn := l.end
	l.stats.Records++
	if !wait {
		return lsn, nil
	}
	for l.synced < lsn {
		if l.err != nil {
			return 0, l.err
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
	buf := l.pending
	upTo := l.end
	l.pending = l.spare[:0]
	l.mu.Unlock()

	err := l.write(buf)

	l.mu.Lock()
	l.spare = buf
	l.writing = false
	if err != nil {
		l.err = fmt.Errorf("wal %s: %w", l.dir, err)
	} else {
		l.synced = upTo
		l.stats.Writes++
		l.stats.Syncs++
		l.stats.Bytes += uint64(len(buf))
	}
	l.cond.Broadcast()
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
		if h := l.opts.Hooks; h != nil && h.BeforeWrite != nil {
			if err := h.BeforeWrite(); err != nil {
				return err
			}
		}
		if _, err := l.cur.WriteAt(buf[:fit], l.curOff); err != nil {
			return err
		}
		l.curOff += int64(fit)
		buf = buf[fit:]
	}
	return l.sync()
}

func (l *Log) sync() error {
	if h := l.opts.Hooks; h != nil && h.BeforeSync != nil {
		if err := h.BeforeSync(); err != nil {
			return err
		}
	}
	return fdatasync(l.cur)
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
	return l.stats
}

// TruncateBefore removes every segment whose records all lie at or below lsn (the caller
// has stored their effect elsewhere). The current segment is never removed.
func (l *Log) TruncateBefore(lsn uint64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	removed := 0
	for removed+1 < len(l.segs) && l.segs[removed+1].start <= lsn {
		if err := os.Remove(l.segs[removed].path); err != nil {
			l.segs = l.segs[removed:]
			return fmt.Errorf("wal: remove segment %s: %w", l.segs[0].path, err)
		}
		removed++
	}
	l.segs = l.segs[removed:]
	if removed > 0 {
		return syncDir(l.dir)
	}
	return nil
}

// Segments returns how many segment files the log has.
func (l *Log) Segments() int {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	return len(l.segs)
}

// Close writes what is queued, waits for a write in flight and closes the current segment;
// Append fails afterwards.
func (l *Log) Close() error {
	l.mu.Lock()
	for l.writing {
		l.cond.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	if len(l.pending) > 0 && l.err == nil {
		l.lead()
	}
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.cur.Close()
}
