package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What the whole machine spent while a load ran: CPU time of every process (the system's
// own, its clients', the kernel's) and bytes written to the disks, per acknowledged write.
// Every system runs alone on the machine, so the machine's cost is the system's cost; and
// a cost per write drifts far less with the machine's speed than writes per second do.

// userHZ is the unit of /proc/stat's times on Linux (USER_HZ, 100 on every architecture
// Go supports there).
const userHZ = 100

// hostSample is one reading of the machine's counters.
type hostSample struct {
	at        time.Time
	busyTicks uint64 // CPU time spent not idle, all CPUs, in 1/userHZ s
	diskBytes uint64 // bytes written to whole disks
}

// readHostSample reads /proc/stat and /proc/diskstats; ok is false where they cannot be
// read (not Linux).
func readHostSample(now time.Time) (hostSample, bool) {
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostSample{}, false
	}
	busy, ok := parseBusyTicks(string(st))
	if !ok {
		return hostSample{}, false
	}
	ds, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return hostSample{}, false
	}
	return hostSample{at: now, busyTicks: busy, diskBytes: parseDiskBytes(string(ds), isWholeDisk)}, true
}

// parseBusyTicks sums the times /proc/stat's "cpu" line counts as this machine's own
// work: user, nice, system, irq and softirq. Idle and iowait are not work; steal is time a
// virtual machine's host gave its CPUs to others (it grows when the host is busy, not
// when the system under test is); guest times are already inside user and nice.
func parseBusyTicks(stat string) (uint64, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, false
	}
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, false
		}
		switch i {
		case 0, 1, 2, 5, 6: // user nice system irq softirq
			busy += n
		}
	}
	return busy, true
}

// parseDiskBytes sums the sectors written (512 bytes each) of the devices whole says are
// whole disks, so that a partition is not counted twice.
func parseDiskBytes(diskstats string, whole func(name string) bool) uint64 {
	var sectors uint64
	for _, line := range strings.Split(diskstats, "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || !whole(f[2]) {
			continue
		}
		if n, err := strconv.ParseUint(f[9], 10, 64); err == nil {
			sectors += n
		}
	}
	return sectors * 512
}

// isWholeDisk: a block device backed by hardware (it has a device link in /sys/block),
// which leaves out partitions, loop, ram and device-mapper devices.
func isWholeDisk(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/block", name, "device"))
	return err == nil
}

// hostSampler reads the machine's counters every interval until stopped.
type hostSampler struct {
	mu      sync.Mutex
	samples []hostSample
	stop    chan struct{}
	done    chan struct{}
}

func startHostSampler(interval time.Duration) *hostSampler {
	s := &hostSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if h, ok := readHostSample(time.Now()); ok {
				s.mu.Lock()
				s.samples = append(s.samples, h)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns its samples.
func (s *hostSampler) finish() []hostSample {
	close(s.stop)
	<-s.done
	if h, ok := readHostSample(time.Now()); ok {
		s.samples = append(s.samples, h)
	}
	return s.samples
}

// costPerOp is the machine's CPU microseconds and disk KiB per op between from and to, the
// counters interpolated linearly between the samples around each end.
func costPerOp(samples []hostSample, from, to time.Time, ops uint64) (cpuUs, diskKiB float64, err error) {
	if ops == 0 || !to.After(from) {
		return 0, 0, fmt.Errorf("no ops in the window")
	}
	a, okA := sampleAt(samples, from)
	b, okB := sampleAt(samples, to)
	if !okA || !okB {
		return 0, 0, fmt.Errorf("the samples (%d) do not cover the window %s to %s", len(samples), from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	}
	cpuUs = (b.busy - a.busy) / userHZ * 1e6 / float64(ops)
	diskKiB = (b.disk - a.disk) / 1024 / float64(ops)
	return cpuUs, diskKiB, nil
}

type interpolated struct{ busy, disk float64 }

// sampleAt interpolates the counters at t from the samples on each side of it.
func sampleAt(samples []hostSample, t time.Time) (interpolated, bool) {
	for i := 1; i < len(samples); i++ {
		p, q := samples[i-1], samples[i]
		if t.Before(p.at) || t.After(q.at) {
			continue
		}
		f := 0.0
		if span := q.at.Sub(p.at); span > 0 {
			f = float64(t.Sub(p.at)) / float64(span)
		}
		lerp := func(x, y uint64) float64 { return float64(x) + f*(float64(y)-float64(x)) }
		return interpolated{busy: lerp(p.busyTicks, q.busyTicks), disk: lerp(p.diskBytes, q.diskBytes)}, true
	}
	return interpolated{}, false
}
