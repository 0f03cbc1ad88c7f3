package core

import (
	"reflect"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// A stale member is in no config and is no learner: the main replicates nothing to it.
func TestQuorumOfSkipsStaleMembers(t *testing.T) {
	gi := &command.GroupInfo{Server: 1, Main: 1,
		Active:  command.Config{Version: 3, Voters: []uint16{2, 3}},
		Pending: &command.Config{Version: 4, Voters: []uint16{2}},
		Siblings: []command.Member{
			{Node: 2, State: command.SiblingVoting}, {Node: 3, State: command.SiblingVoting, Demote: command.SiblingStale},
			{Node: 4, State: command.SiblingSyncing}, {Node: 5, State: command.SiblingStale},
		}}
	q, learners := quorumOf(gi)
	if !reflect.DeepEqual(q.Sets, [][]uint16{{2, 3}, {2}}) || q.Version != 4 {
		t.Fatalf("quorum %+v; want joint {2,3} and {2} at version 4", q)
	}
	if !reflect.DeepEqual(learners, []uint16{4}) {
		t.Fatalf("learners %v, want [4] (5 is stale)", learners)
	}
}
