package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	// segMagic starts a segment whose record checksums cover the record's LSN as well as
	// its payload (recordSum). A segment file is reused once the log no longer needs it
	// (recycle.go), and the records left in it from its previous life must not read as
	// records of its new one: their checksums were keyed with other LSNs.
	segMagic = "SIBYLWL2"
	// segMagicV1 starts a segment written before checksums were keyed: its records'
	// checksums cover the payload alone. Such segments are still read; new ones are v2.
	segMagicV1   = "SIBYLWAL"
	segHeader    = 16 // magic + start LSN
	recordHeader = 8  // length + checksum
	segSuffix    = ".wal"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// segment is one file of the log: records from start (an LSN) on.
type segment struct {
	start uint64
	path  string
}

func segmentName(start uint64) string { return fmt.Sprintf("%016x%s", start, segSuffix) }

// listSegments returns the segment files of dir in LSN order, and its spares (recycle.go).
func listSegments(dir string) (segs []segment, spares []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list wal segments in %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, spareSuffix) {
			spares = append(spares, filepath.Join(dir, name))
		}
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		start, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("wal segment %s: name is not a hex LSN", filepath.Join(dir, name))
		}
		segs = append(segs, segment{start: start, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	return segs, spares, nil
}

// errNoHeader marks a segment whose header never reached the disk.
var errNoHeader = errors.New("segment has no header")

// scanSegment reads seg's intact records in order, calls fn with each record's LSN and
// payload (valid only during the call), and returns the LSN where the intact part ends.
// With limit > 0 (where the next segment starts) it stops there: bytes after it are a
// write that failed and was made again in the next segment (Log.Repair).
func scanSegment(seg segment, limit uint64, fn func(lsn uint64, rec []byte) error) (uint64, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("open wal segment %s: %w", seg.path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("read wal segment %s: %w", seg.path, err)
	}
	if len(data) < segHeader || (string(data[:8]) != segMagic && string(data[:8]) != segMagicV1) {
		if allZero(data) {
			return seg.start, errNoHeader
		}
		return 0, fmt.Errorf("wal segment %s: bad header", seg.path)
	}
	if got := binary.BigEndian.Uint64(data[8:16]); got != seg.start {
		return 0, fmt.Errorf("wal segment %s: header says it starts at LSN %d", seg.path, got)
	}
	keyed := string(data[:8]) == segMagic
	off := segHeader
	for off+recordHeader <= len(data) && (limit == 0 || seg.start+uint64(off-segHeader) < limit) {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 || off+recordHeader+n > len(data) {
			break
		}
		rec := data[off+recordHeader : off+recordHeader+n]
		if keyed && recordSum(seg.start+uint64(off-segHeader), rec) != sum ||
			!keyed && crc32.Checksum(rec, crcTable) != sum {
			break
		}
		off += recordHeader + n
		if fn != nil {
			if err := fn(seg.start+uint64(off-segHeader), rec); err != nil {
				return 0, err
			}
		}
	}
	return seg.start + uint64(off-segHeader), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// segmentHeader is the first bytes of the segment starting at LSN start.
func segmentHeader(start uint64) []byte {
	hdr := make([]byte, segHeader)
	copy(hdr, segMagic)
	binary.BigEndian.PutUint64(hdr[8:], start)
	return hdr
}

// createSegment makes a preallocated segment file starting at start, durable with its
// directory entry before it is used.
func createSegment(dir string, start uint64, size int64) (*os.File, error) {
	size = blocksOf(size) // whole blocks, for direct writes
	path := filepath.Join(dir, segmentName(start))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create wal segment: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create wal segment %s: %w", path, err)
	}
	if err := preallocate(f, size); err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(segmentHeader(start), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendRecord frames rec, the record that starts at LSN start, onto buf.
func appendRecord(buf []byte, start uint64, rec []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(rec)))
	buf = binary.BigEndian.AppendUint32(buf, recordSum(start, rec))
	return append(buf, rec...)
}

// recordSum is the checksum of the record rec that starts at LSN start: CRC-32C of the
// LSN (8 bytes, big-endian) followed by the payload. The same bytes at another position
// do not check, so a record left in a reused segment file from its previous life ends
// the segment as a torn record does.
func recordSum(start uint64, rec []byte) uint32 {
	var pos [8]byte
	binary.BigEndian.PutUint64(pos[:], start)
	return crc32.Update(crc32.Checksum(pos[:], crcTable), crcTable, rec)
}

// rekeyRecords rewrites the checksums of buf's framed records for their positions when buf
// is written at LSN start (records moved to another position keep their payload).
func rekeyRecords(buf []byte, start uint64) {
	for off := 0; off < len(buf); {
		n := int(binary.BigEndian.Uint32(buf[off:]))
		rec := buf[off+recordHeader : off+recordHeader+n]
		binary.BigEndian.PutUint32(buf[off+4:], recordSum(start+uint64(off), rec))
		off += recordHeader + n
	}
}
