package client

import (
	"testing"

	"github.com/sibylhq/sibyl/command"
)

func TestChoosePlacement(t *testing.T) {
	main := func(n uint16) *uint16 { return &n }
	nodes := []command.StatusNode{{ID: 1, Addr: "h:1"}, {ID: 2, Addr: "h:2"}, {ID: 3, Addr: "h:3"}}
	st := &command.Status{Nodes: nodes, Groups: []command.StatusGroup{
		{Server: 1, Main: main(2)}, // node 1's group was taken over by node 2
		{Server: 2, Main: main(2)},
		{Server: 3, Main: nil},
		{Server: 4, Main: main(1)},
	}}
	cases := []struct {
		host string
		want int64 // 0: nil
	}{
		{"h:2", 2}, // main of its own group
		{"h:1", 4}, // main of another group only
		{"h:3", 3}, // main of nothing: its own group
		{"h:9", 1}, // unknown node: the first group with a main
	}
	for _, tc := range cases {
		got := choosePlacement(st, tc.host)
		if got == nil || *got != tc.want {
			t.Fatalf("host %s: placement %v, want %d", tc.host, got, tc.want)
		}
	}
	if got := choosePlacement(&command.Status{}, "h:1"); got != nil {
		t.Fatalf("no groups: placement %d, want none", *got)
	}
}
