package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// --max-clock-drift reaches dev's nodes only when it differs from their default, and a
// node refuses a rate outside (0, 1).
func TestMaxClockDriftFlag(t *testing.T) {
	l, err := layoutDev(7700, 1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/d", WriteTimeout: time.Second, DownAfter: time.Second, LogLevel: "info"}
	for _, tc := range []struct {
		drift float64
		want  []string
	}{
		{0, nil},
		{1e-3, nil},
		{0.01, []string{"--max-clock-drift", "0.01"}},
	} {
		o.MaxClockDrift = tc.drift
		args := nodeArgs(o, l.Nodes[0])
		i := slices.Index(args, "--max-clock-drift")
		switch {
		case tc.want == nil && i >= 0:
			t.Errorf("drift %v: node args %q name the default", tc.drift, args)
		case tc.want != nil && (i < 0 || !slices.Equal(args[i:i+2], tc.want)):
			t.Errorf("drift %v: node args %q lack %q", tc.drift, args, tc.want)
		}
	}
	for _, bad := range []string{"0", "1", "-0.5", "NaN"} {
		var out bytes.Buffer
		code := run([]string{"node", "--id", "1", "--http", "x:1", "--data", "d", "--controllers", "c:1", "--max-clock-drift", bad}, &out, &out)
		if code != exitUsage || !strings.Contains(out.String(), "--max-clock-drift") {
			t.Errorf("--max-clock-drift %s: exit %d, output:\n%s", bad, code, out.String())
		}
	}
}

// --copy-timeout reaches dev's controllers only when it differs from their default, and the
// location command refuses a value that is not positive.
func TestCopyTimeoutFlag(t *testing.T) {
	l, err := layoutDev(7700, 1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/d", WriteTimeout: time.Second, DownAfter: time.Second, LogLevel: "info"}
	for _, tc := range []struct {
		timeout time.Duration
		want    []string
	}{
		{0, nil},
		{10 * time.Minute, nil},
		{30 * time.Second, []string{"--copy-timeout", "30s"}},
	} {
		o.CopyTimeout = tc.timeout
		args := l.controllerArgs(o, l.Controllers[0])
		i := slices.Index(args, "--copy-timeout")
		switch {
		case tc.want == nil && i >= 0:
			t.Errorf("copy-timeout %v: controller args %q name the default", tc.timeout, args)
		case tc.want != nil && (i < 0 || !slices.Equal(args[i:i+2], tc.want)):
			t.Errorf("copy-timeout %v: controller args %q lack %q", tc.timeout, args, tc.want)
		}
	}
	for _, bad := range []string{"0s", "-1m"} {
		var out bytes.Buffer
		code := run([]string{"location", "--id", "c1", "--http", "x:1", "--raft", "x:2", "--data", "d", "--copy-timeout", bad}, &out, &out)
		if code != exitUsage || !strings.Contains(out.String(), "--copy-timeout") {
			t.Errorf("--copy-timeout %s: exit %d, output:\n%s", bad, code, out.String())
		}
	}
}

// A flush threshold too small to batch anything is a usage error, not a node that flushes
// after every write.
func TestNodeRefusesTinyFlushSettings(t *testing.T) {
	for _, bad := range [][]string{{"--flush-bytes", "1000"}, {"--flush-every", "1ms"}} {
		var out strings.Builder
		args := append([]string{"node", "--id", "1", "--http", "x:1", "--data", "d", "--controllers", "c:1"}, bad...)
		code := run(args, &out, &out)
		if code != exitUsage || !strings.Contains(out.String(), "--flush-bytes") {
			t.Errorf("%v: exit %d, output %q; want a usage error naming the flag", bad, code, out.String())
		}
	}
}
