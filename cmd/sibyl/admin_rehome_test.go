package main

import (
	"bytes"
	"strings"
	"testing"
)

// sibyl admin rehome checks its flags before it connects anywhere.
func TestAdminRehomeFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rehome", "--location", "loc2"}, "--server 0"},
		{[]string{"rehome", "--server", "70000", "--location", "loc2"}, "--server 70000"},
		{[]string{"rehome", "--server", "1"}, "--location is required"},
		{[]string{"rehome", "--server", "1", "--location", "loc2", "extra"}, "unexpected arguments"},
	} {
		var out, errOut bytes.Buffer
		if code := runAdmin(c.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("sibyl admin %v: exit %d, stderr %q; want exit %d naming %q", c.args, code, errOut.String(), exitUsage, c.want)
		}
	}
	var out, errOut bytes.Buffer
	runAdmin([]string{"help"}, &out, &errOut)
	if !strings.Contains(out.String(), "rehome") {
		t.Errorf("sibyl admin help does not list rehome:\n%s", out.String())
	}
}
