package wal

import (
	"fmt"
	"os"
	"path/filepath"
)

// Recycled segments. A segment the log no longer needs (TruncateBefore) is renamed to a
// spare instead of being removed, and the next roll reuses it: its blocks were written in
// its previous life, so a direct write into it changes no extent. A direct, synchronous
// write into preallocated space that was never written must also convert the extent and
// write the inode before it is durable: three disk round trips (data, inode, cache flush)
// where a write into written blocks needs two, or three only when the file's modification
// time moved. Measured with sibyl bench (4 nodes on 2 CPUs, 64 clients, three interleaved
// pairs, logs on segments written with zeros before the run against preallocated ones):
// 8,395 against 6,795, 7,964 against 7,895 and 8,581 against 8,051 writes/s, node CPU per
// write 147 against 196, 152 against 160 and 137 against 149 µs, 15 % fewer bytes to the
// disk per write. A node reaches that state once its log has gone round its first
// segments; writing zeros ahead of the log in new segments instead cost more than it saved
// while the log was being written (p99 at 64 clients 17.9-23.7 ms against 14.8-17.0).
// The log keeps at most maxSpares spares; the rest are removed.
//
// A reused file starts with a new header (the new start LSN, made durable before the file
// takes its segment name) and still holds the records of its previous life after it. Those
// do not read as records of the new segment: a record's checksum covers its LSN
// (recordSum), and every position of the file now has another LSN. A crash between the
// header and the rename leaves a spare, which Open ignores.
//
//	spare:  "<old start LSN>.spare"  (any content; never read)

const (
	spareSuffix = ".spare"
	maxSpares   = 2
)

func spareName(start uint64) string { return fmt.Sprintf("%016x%s", start, spareSuffix) }

// retire takes seg out of the log: it is renamed to a spare while fewer than maxSpares
// are kept and it is no larger than a segment (one sized for a large record is not worth
// reading at every Open), else removed. It returns the spare's path, or "". The caller
// syncs the directory and only then lists the spare in l.spares: a spare is reused only
// once its rename is durable, so a crash never shows a reused file under its old name.
// Call with l.segMu held.
func (l *Log) retire(seg segment, pending int) (string, error) {
	if len(l.spares)+pending < maxSpares {
		if st, err := os.Stat(seg.path); err == nil && st.Size() <= blocksOf(l.opts.SegmentBytes) {
			spare := filepath.Join(l.dir, spareName(seg.start))
			if err := os.Rename(seg.path, spare); err == nil {
				return spare, nil
			}
		}
	}
	return "", os.Remove(seg.path)
}

// reuseSpare makes a spare of at least size bytes the segment starting at start, durable
// with its directory entry, and returns it open, with its new path; f is nil when no spare
// fits. A spare is never given back the start it had: its old records would check there.
// A spare that fails to become the segment is dropped. Called by the leader or Open.
func (l *Log) reuseSpare(start uint64, size int64) (f *os.File, path string, err error) {
	own := filepath.Join(l.dir, spareName(start))
	l.segMu.Lock()
	spare := ""
	for i := len(l.spares) - 1; i >= 0; i-- {
		if l.spares[i] == own {
			continue
		}
		if st, err := os.Stat(l.spares[i]); err != nil || st.Size() < size {
			continue
		}
		spare = l.spares[i]
		l.spares = append(l.spares[:i], l.spares[i+1:]...)
		break
	}
	l.segMu.Unlock()
	if spare == "" {
		return nil, "", nil
	}
	path = filepath.Join(l.dir, segmentName(start))
	if f, err = l.renew(spare, start, path); err != nil {
		return nil, "", fmt.Errorf("reuse wal spare %s as %s: %w", spare, path, err)
	}
	return f, path, nil
}

// renew writes the header of the segment starting at start into the spare, makes it
// durable, and renames the spare to path, durable with the directory. On failure neither
// file is left behind (best effort): a segment file the log does not list would break a
// later Repair or Open.
func (l *Log) renew(spare string, start uint64, path string) (*os.File, error) {
	f, err := os.OpenFile(spare, os.O_RDWR, 0)
	if err != nil {
		os.Remove(spare)
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(spare)
		os.Remove(path)
		return nil, err
	}
	if _, err := f.WriteAt(segmentHeader(start), 0); err != nil {
		return fail(err)
	}
	if err := fdatasync(f); err != nil {
		return fail(err)
	}
	if err := os.Rename(spare, path); err != nil {
		return fail(err)
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err)
	}
	return f, nil
}
