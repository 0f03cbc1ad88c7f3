package main

import (
	"os"
	"runtime"
	"strings"
	"time"
)

// machineInfo says where and when the figures were taken.
type machineInfo struct {
	Date  string `json:"date"`
	NProc int    `json:"nproc"`
	CPU   string `json:"cpu"`
	OS    string `json:"os"`
}

func readMachine(now time.Time) machineInfo {
	m := machineInfo{Date: now.Format("2006-01-02 15:04:05 MST"), NProc: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if m.CPU == "" {
		m.CPU = "unknown"
	}
	return m
}

// cpuModel returns the first "model name" of a /proc/cpuinfo text, or "".
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
