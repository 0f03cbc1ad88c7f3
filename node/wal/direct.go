package wal

import (
	"errors"
	"unsafe"
)

// Direct writes. Where the filesystem allows it (Linux, not tmpfs), the log writes its
// records with direct I/O on a handle opened O_DIRECT|O_DSYNC: each write goes to the disk
// and is durable when it returns, with no page cache copy and no separate fdatasync. Direct
// I/O writes whole aligned blocks, so the log keeps the partial block at its end in memory
// and writes it again, followed by the new records and zero padding, with the next write:
//
//	block:   | earlier records | new records | zeros |
//	         ^ blockStart      ^ curOff            ^ next block boundary
//
// Rewriting the earlier records writes the bytes they already had, so a write torn by a
// crash leaves them as they were; only the new records can be torn, and their checksums
// tell. The zeros end the segment for a reader, as the preallocated space after them does.
//
// Measured with sibyl bench (4 nodes on 2 CPUs, 64 clients, eight interleaved pairs of
// 8-10 s runs): direct writes were faster in seven pairs, by up to 18 % (median 4 %), e.g.
// 10,473 against 9,356 writes/s with p99 15.3 against 16.3 ms, and 9,390 against 7,954.
// A node spends about half of its time in the log's durable write at that load, with its
// one scheduler slot held (fdatasync's comment); one direct write is shorter than a
// buffered write and an fdatasync, which also wakes a kernel worker to convert the
// preallocated extents it wrote.

// directWrite is pwriteDurable; tests replace it to refuse writes as a filesystem can.
var directWrite = pwriteDurable

// blockSize is the alignment of direct writes: offsets, lengths and the buffer's address.
const blockSize = 4096

// blocksOf is n rounded up to whole blocks: the length of a direct write, or of a segment.
func blocksOf(n int64) int64 { return (n + blockSize - 1) &^ (blockSize - 1) }

// errNoDirectIO says the platform has no direct I/O; the log then writes buffered.
var errNoDirectIO = errors.New("direct I/O is not available on this platform")

// alignedBuffer returns n zero bytes (n a multiple of blockSize) starting at an address
// aligned to blockSize.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+blockSize)
	off := (blockSize - int(uintptr(unsafe.Pointer(&b[0]))&(blockSize-1))) & (blockSize - 1)
	return b[off : off+n : off+n]
}

// startDirect opens the direct handle of the new segment at path whose first bytes (its
// header) are head, and makes the block buffer hold them. When the filesystem refuses
// direct I/O the log writes buffered from here on.
func (l *Log) startDirect(path string, head []byte) {
	d, err := openDirect(path)
	if err != nil {
		l.opts.Buffered = true
		return
	}
	l.dcur = d
	if len(l.block) < blockSize {
		l.block = alignedBuffer(64 << 10)
	}
	clear(l.block[:blockSize])
	copy(l.block, head)
}

// stopDirect makes the log write buffered from now on. What direct writes wrote before
// curOff is durable already; the next sync covers what follows.
func (l *Log) stopDirect() {
	l.dcur.Close()
	l.dcur = nil
	l.opts.Buffered = true
}

// writeDirect writes p at curOff through the direct handle, as whole blocks: the partial
// block before curOff (kept at the front of l.block), p, and zeros to the next boundary.
func (l *Log) writeDirect(p []byte) error {
	in := int(l.curOff % blockSize)
	n := in + len(p)
	total := int(blocksOf(int64(n)))
	if total > len(l.block) {
		b := alignedBuffer(total)
		copy(b, l.block[:in])
		l.block = b
	}
	copy(l.block[in:], p)
	clear(l.block[n:total])
	if err := directWrite(l.dcur, l.block[:total], l.curOff-int64(in)); err != nil {
		return err
	}
	full := n &^ (blockSize - 1)
	copy(l.block, l.block[full:n]) // the new partial block moves to the front
	if cap(l.block) > 1<<20 && total <= 64<<10 {
		// A large record grew the buffer; do not keep it.
		b := alignedBuffer(64 << 10)
		copy(b, l.block[:n-full])
		l.block = b
	}
	return nil
}
