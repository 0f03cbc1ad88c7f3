package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsageAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // expected in stdout+stderr
	}{
		{[]string{"--help"}, exitOK, "commands:"},
		{[]string{}, exitUsage, "usage: sibyl"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"node", "--help"}, exitOK, "-write-timeout"},
		{[]string{"node", "--id", "1"}, exitUsage, "required"},
		{[]string{"node", "--id", "70000", "--http", "x:1", "--data", "d", "--controllers", "c:1"}, exitUsage, "1..65535"},
		{[]string{"location", "--id", "c1", "--http", "x:1", "--raft", "x:2", "--data", "d", "--peers", "c2=x:3"}, exitUsage, "must include this controller"},
		{[]string{"dev", "--locations", "0"}, exitUsage, "--locations 0"},
		{[]string{"dev", "--locations", "17", "--controllers", "3"}, exitUsage, "below the raft ports"},
		{[]string{"location", "--id", "c1", "--http", "x:1", "--raft", "x:2", "--data", "d", "--locations", "loc2"}, exitUsage, "NAME=HOST:PORT"},
		{[]string{"get"}, exitUsage, "exactly one RID"},
		{[]string{"watch", "--rid", "1-X", "--type", "t"}, exitUsage, "exactly one of"},
		{[]string{"admin", "promote", "--node", "2"}, exitUsage, "--server 0"},
		{[]string{"admin", "nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"bench", "--workload", "deletes"}, exitUsage, "--workload"},
		{[]string{"create", "--type", "t", "--data", "{bad"}, exitUsage, "not valid JSON"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		all := out.String() + errOut.String()
		if code != tc.code || !strings.Contains(all, tc.out) {
			t.Errorf("sibyl %q: exit %d, want %d; output lacks %q:\n%s", tc.args, code, tc.code, tc.out, all)
		}
	}
}
