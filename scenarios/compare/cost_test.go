package main

import (
	"math"
	"testing"
	"time"
)

func TestParseBusyTicks(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, ok := parseBusyTicks("cpu  100 5 50 1000 30 2 3 400 7 1\ncpu0 50 2 25 500 15 1 1 2 0 0\n")
	if !ok || busy != 100+5+50+2+3 {
		t.Fatalf("busy %d ok %v, want %d (idle, iowait, steal and guest left out)", busy, ok, 100+5+50+2+3)
	}
	if _, ok := parseBusyTicks("intr 1 2 3\n"); ok {
		t.Fatal("a text without the cpu line parsed")
	}
}

func TestParseDiskBytesCountsWholeDisksOnly(t *testing.T) {
	stats := "   8       0 sda 10 0 100 5 20 0 400 9 0 0 0\n" +
		"   8       1 sda1 10 0 100 5 20 0 400 9 0 0 0\n" +
		"   7       0 loop0 1 0 8 0 1 0 999 0 0 0 0\n"
	got := parseDiskBytes(stats, func(name string) bool { return name == "sda" })
	if got != 400*512 {
		t.Fatalf("%d bytes, want %d: only sda's sectors written", got, 400*512)
	}
}

func TestCostPerOpInterpolatesTheWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	samples := []hostSample{
		{at: t0, busyTicks: 0, diskBytes: 0},
		{at: t0.Add(time.Second), busyTicks: 200, diskBytes: 1 << 20}, // 2 CPUs busy, 1 MiB/s
		{at: t0.Add(2 * time.Second), busyTicks: 400, diskBytes: 2 << 20},
	}
	cpu, disk, err := costPerOp(samples, t0.Add(500*time.Millisecond), t0.Add(1500*time.Millisecond), 1000)
	if err != nil {
		t.Fatal(err)
	}
	// One second of two busy CPUs over 1000 ops: 2,000 µs each; 1 MiB over 1000 ops.
	if math.Abs(cpu-2000) > 1e-6 || math.Abs(disk-1.024) > 1e-6 {
		t.Fatalf("cpu %.3f µs/op, disk %.3f KiB/op; want 2000 and 1.024", cpu, disk)
	}
	if _, _, err := costPerOp(samples, t0.Add(-time.Second), t0.Add(time.Second), 10); err == nil {
		t.Fatal("a window starting before the first sample was costed")
	}
	if _, _, err := costPerOp(samples, t0, t0.Add(time.Second), 0); err == nil {
		t.Fatal("a window without ops was costed")
	}
}
