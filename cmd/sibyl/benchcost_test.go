package main

import (
	"math"
	"os"
	"testing"
)

func TestParseProcTicks(t *testing.T) {
	// A command name with spaces and parentheses: fields count from its last ')'.
	stat := "4242 (sib (node) 1) S 1 4242 4242 0 -1 4194560 1200 0 3 0 731 269 0 0 20 0 9 0 1000 1 1 1\n"
	got, ok := parseProcTicks(stat)
	if !ok || got != 731+269 {
		t.Fatalf("parseProcTicks = %d, %v; want 1000 (utime 731 + stime 269)", got, ok)
	}
	for _, bad := range []string{"", "4242 no name 1 2 3", "4242 (x) S 1 2"} {
		if _, ok := parseProcTicks(bad); ok {
			t.Errorf("parseProcTicks(%q) ok, want a refusal", bad)
		}
	}
}

func TestParseWriteBytes(t *testing.T) {
	io := "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 819200\ncancelled_write_bytes: 0\n"
	if got, ok := parseWriteBytes(io); !ok || got != 819200 {
		t.Fatalf("parseWriteBytes = %d, %v; want 819200", got, ok)
	}
	if _, ok := parseWriteBytes("rchar: 10\n"); ok {
		t.Error("parseWriteBytes of a file without write_bytes is ok")
	}
}

func TestParseCPUTicks(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice: guest times are
	// inside user and nice already, so they do not count again.
	stat := "cpu  100 5 50 700 45 10 10 80 30 0\ncpu0 50 2 25 350 20 5 5 40 15 0\n"
	idle, all, ok := parseCPUTicks(stat)
	if !ok || idle != 745 || all != 1000 {
		t.Fatalf("parseCPUTicks = %d, %d, %v; want idle 745 of 1000", idle, all, ok)
	}
	if _, _, ok := parseCPUTicks("intr 1 2 3\n"); ok {
		t.Error("parseCPUTicks without a cpu line is ok")
	}
}

func TestCostOf(t *testing.T) {
	from := costSample{nodeTicks: 1000, nodeBytes: 1 << 20, benchTicks: 50, idleTicks: 400, allTicks: 2000}
	// 2,000 ops over 4 s of 2 CPUs (800 ticks): the nodes spent 120 ticks (1.2 s), the
	// bench 20 (0.2 s), 200 of the 800 ticks were idle, the nodes wrote 4 MiB.
	to := costSample{nodeTicks: 1120, nodeBytes: 5 << 20, benchTicks: 70, idleTicks: 600, allTicks: 2800}
	c, ok := costOf(from, to, 2000)
	if !ok {
		t.Fatal("no cost")
	}
	want := benchCost{NodeCPUMicros: 600, BenchCPUMicros: 100, NodeDiskKiB: 2.048, MachineIdlePct: 25}
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"node CPU µs/op", c.NodeCPUMicros, want.NodeCPUMicros},
		{"bench CPU µs/op", c.BenchCPUMicros, want.BenchCPUMicros},
		{"node KiB/op", c.NodeDiskKiB, want.NodeDiskKiB},
		{"idle %", c.MachineIdlePct, want.MachineIdlePct},
	} {
		if math.Abs(f.got-f.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if _, ok := costOf(from, to, 0); ok {
		t.Error("a cost per op of no ops")
	}
}

// On Linux a sample of this very process reads: its CPU and writes, and the machine's.
func TestReadCostSampleOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("no /proc here")
	}
	s, ok := readCostSample([]int{os.Getpid()})
	if !ok || s.allTicks == 0 {
		t.Fatalf("readCostSample of this process: %+v, %v", s, ok)
	}
	if _, ok := readCostSample([]int{os.Getpid(), 1 << 30}); ok {
		t.Error("a sample with a process that does not exist is ok")
	}
}
