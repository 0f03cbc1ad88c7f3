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
