package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// What the measured window cost, per operation: the CPU time of the cluster's node
// processes (their pids come from --cluster's cluster.json) and of the bench itself, the
// bytes the nodes wrote to storage, and the share of the machine that stayed idle. Read
// from Linux's /proc; elsewhere, or without pids, there is no cost.

// benchCost is the cost of the measured window per operation.
type benchCost struct {
	NodeCPUMicros  float64 `json:"nodeCpuUsPerOp"`   // CPU of every node process
	BenchCPUMicros float64 `json:"benchCpuUsPerOp"`  // CPU of this bench process
	NodeDiskKiB    float64 `json:"nodeDiskKiBPerOp"` // bytes the nodes wrote to storage (/proc/<pid>/io write_bytes)
	MachineIdlePct float64 `json:"machineIdlePct"`   // idle and iowait time of all CPUs, in % of all their time
}

// procTicksPerSecond is the unit of /proc's CPU times on Linux (USER_HZ, 100 on every
// architecture Go supports there).
const procTicksPerSecond = 100

// costSample is one reading of the counters a benchCost is the difference of.
type costSample struct {
	nodeTicks, nodeBytes uint64 // summed over the node processes
	benchTicks           uint64
	idleTicks, allTicks  uint64 // /proc/stat's cpu line
}

// readCostSample reads the counters of the node processes pids and of this process; ok
// is false when one of them cannot be read (not Linux, a node gone).
func readCostSample(pids []int) (costSample, bool) {
	var s costSample
	for _, pid := range pids {
		ticks, ok := readProcTicks(pid)
		if !ok {
			return s, false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			return s, false
		}
		written, ok := parseWriteBytes(string(b))
		if !ok {
			return s, false
		}
		s.nodeTicks += ticks
		s.nodeBytes += written
	}
	var ok bool
	if s.benchTicks, ok = readProcTicks(os.Getpid()); !ok {
		return s, false
	}
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, false
	}
	s.idleTicks, s.allTicks, ok = parseCPUTicks(string(st))
	return s, ok
}

func readProcTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	return parseProcTicks(string(b))
}

// parseProcTicks returns utime + stime of a /proc/<pid>/stat line. The command name in
// parentheses may hold spaces and parentheses, so the fields are counted after its last
// ')'.
func parseProcTicks(stat string) (uint64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime(14) stime(15), so utime is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// parseWriteBytes returns write_bytes of a /proc/<pid>/io file: bytes the process caused
// to be sent to storage.
func parseWriteBytes(io string) (uint64, bool) {
	for _, line := range strings.Split(io, "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// parseCPUTicks returns the idle (idle + iowait) and total times of /proc/stat's "cpu"
// line, all CPUs. Guest times are already inside user and nice, so they are left out.
func parseCPUTicks(stat string) (idle, all uint64, ok bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		all += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, all, true
}

// costOf is the cost per operation between two samples; ok is false without operations.
func costOf(from, to costSample, ops uint64) (benchCost, bool) {
	if ops == 0 || to.allTicks <= from.allTicks {
		return benchCost{}, false
	}
	perOp := func(ticks uint64) float64 {
		return float64(ticks) * float64(time.Second/time.Microsecond) / procTicksPerSecond / float64(ops)
	}
	return benchCost{
		NodeCPUMicros:  perOp(to.nodeTicks - from.nodeTicks),
		BenchCPUMicros: perOp(to.benchTicks - from.benchTicks),
		NodeDiskKiB:    float64(to.nodeBytes-from.nodeBytes) / 1024 / float64(ops),
		MachineIdlePct: 100 * float64(to.idleTicks-from.idleTicks) / float64(to.allTicks-from.allTicks),
	}, true
}
