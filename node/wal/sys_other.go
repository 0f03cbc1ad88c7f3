//go:build !linux

package wal

import "os"

func preallocate(f *os.File, size int64) error { return f.Truncate(size) }

func fdatasync(f *os.File) error { return f.Sync() }

func openDirect(string) (*os.File, error) { return nil, errNoDirectIO }

func pwriteDurable(f *os.File, b []byte, off int64) error {
	_, err := f.WriteAt(b, off)
	return err
}
