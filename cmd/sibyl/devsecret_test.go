package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// dev gives its cluster secret and admin tokens to every controller and every node.
func TestDevPassesTheSecretToEveryProcess(t *testing.T) {
	l, err := layoutDev(7700, 2, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/d", WriteTimeout: time.Second, DownAfter: time.Second, LogLevel: "info",
		ClusterSecret: "s3cret", AdminTokens: []string{"a1", "a2"}, NodeFlags: []string{"--log-keep", "1000"}}
	want := []string{"--cluster-secret", "s3cret", "--admin-token", "a1", "--admin-token", "a2"}
	for _, c := range l.Controllers {
		if args := l.controllerArgs(o, c); !containsRun(args, want) {
			t.Errorf("controller %s args %q lack %q", c.ID, args, want)
		}
	}
	for _, n := range l.Nodes {
		args := nodeArgs(o, n)
		if !containsRun(args, want) {
			t.Errorf("node %d args %q lack %q", n.ID, args, want)
		}
		if !slices.Equal(args[len(args)-2:], o.NodeFlags) {
			t.Errorf("node %d args %q: --node-flags must come last, to override", n.ID, args)
		}
	}
	o.ClusterSecret, o.AdminTokens = "", nil
	for _, args := range [][]string{l.controllerArgs(o, l.Controllers[0]), nodeArgs(o, l.Nodes[0])} {
		if slices.Contains(args, "--cluster-secret") || slices.Contains(args, "--admin-token") {
			t.Errorf("args %q name a secret or token dev was not given", args)
		}
	}
}

// containsRun reports whether want appears in args as a contiguous run.
func containsRun(args, want []string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func TestNodeFlagValue(t *testing.T) {
	for _, tc := range []struct {
		flags string
		value string
		ok    bool
	}{
		{"", "", false},
		{"--log-keep 1000", "", false},
		{"--cluster-secret s3cret", "s3cret", true},
		{"-cluster-secret s3cret --log-keep 5", "s3cret", true},
		{"--cluster-secret=s3cret", "s3cret", true},
		{"--cluster-secret a --cluster-secret=b", "b", true},
		{"--cluster-secret", "", false},
		{"--cluster-secrets x", "", false},
	} {
		v, ok := nodeFlagValue(strings.Fields(tc.flags), "cluster-secret")
		if v != tc.value || ok != tc.ok {
			t.Errorf("%q: got %q %v, want %q %v", tc.flags, v, ok, tc.value, tc.ok)
		}
	}
}

// Two different secrets for one dev cluster are a usage error, caught before anything
// starts.
func TestDevRefusesTwoSecrets(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"dev", "--cluster-secret", "a", "--node-flags", "--cluster-secret b"}, &out, &out)
	if code != exitUsage || !strings.Contains(out.String(), "differ") {
		t.Fatalf("exit %d, output:\n%s", code, out.String())
	}
}

// The location command takes --cluster-secret and --admin-token (and their SIBYL_
// variables): a bad value elsewhere still fails as a usage error naming that flag, not
// these.
func TestLocationSecurityFlags(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"location", "--id", "c1", "--http", "x:1", "--raft", "x:2", "--data", "d",
		"--cluster-secret", "s3cret", "--admin-token", "a1,a2", "--copy-timeout", "0s"}, &out, &out)
	if code != exitUsage || !strings.Contains(out.String(), "--copy-timeout") {
		t.Fatalf("exit %d, output:\n%s", code, out.String())
	}
	out.Reset()
	run([]string{"location", "--help"}, &out, &out)
	for _, flag := range []string{"-cluster-secret", "-admin-token", "SIBYL_CLUSTER_SECRET"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("location --help does not mention %s:\n%s", flag, out.String())
		}
	}
}
