package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Recycled segments. A segment the log no longer needs (TruncateBefore) is renamed to a
// spare instead of being removed, and the next roll reuses it: its blocks were written in
// its previous life, so a direct write into it changes no extent and needs no inode write
// before it is durable, one disk round trip fewer than a write into preallocated, never
// written space (prefill.go has the figures). The log keeps at most maxSpares spares; the
// rest are removed.
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

// listSpares returns the spare files in dir.
func listSpares(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list wal spares in %s: %w", dir, err)
	}
	var spares []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), spareSuffix) {
			spares = append(spares, filepath.Join(dir, e.Name()))
		}
	}
	return spares, nil
}

// retire takes seg out of the log: it becomes a spare while fewer than maxSpares are kept,
// else it is removed. The caller syncs the directory. Call with l.segMu held.
func (l *Log) retire(seg segment) error {
	if len(l.spares) < maxSpares {
		spare := filepath.Join(l.dir, spareName(seg.start))
		if err := os.Rename(seg.path, spare); err == nil {
			l.spares = append(l.spares, spare)
			return nil
		}
	}
	return os.Remove(seg.path)
}

// reuseSpare makes a spare of at least size bytes the segment starting at start, durable
// with its directory entry, and returns it open, with its new path; f is nil when no spare
// fits (those too small are removed). Called by the leader or Open.
func (l *Log) reuseSpare(start uint64, size int64) (f *os.File, path string, err error) {
	for {
		l.segMu.Lock()
		n := len(l.spares)
		if n == 0 {
			l.segMu.Unlock()
			return nil, "", nil
		}
		spare := l.spares[n-1]
		l.spares = l.spares[:n-1]
		l.segMu.Unlock()

		f, err := os.OpenFile(spare, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("reuse wal spare %s: %w", spare, err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() < size {
			f.Close()
			err = os.Remove(spare)
			if err == nil {
				continue
			}
		}
		if err != nil {
			f.Close()
			return nil, "", fmt.Errorf("reuse wal spare %s: %w", spare, err)
		}
		path := filepath.Join(l.dir, segmentName(start))
		if err := l.renew(f, start, spare, path); err != nil {
			f.Close()
			return nil, "", fmt.Errorf("reuse wal spare %s as %s: %w", spare, path, err)
		}
		return f, path, nil
	}
}

// renew writes the header of the segment starting at start into the spare f, makes it
// durable, and renames the spare to path, durable with the directory.
func (l *Log) renew(f *os.File, start uint64, spare, path string) error {
	if _, err := f.WriteAt(segmentHeader(start), 0); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := os.Rename(spare, path); err != nil {
		return err
	}
	return syncDir(l.dir)
}
