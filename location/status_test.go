package location

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

func TestBuildStatus(t *testing.T) {
	f, idx := buildFSM(t)
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	st, _ := f.view()
	st.Groups[3].Main = 0 // a group without a main
	reports := reportSet{
		1: {1: mainRep(1, 100, 3, command.SiblingProgress{Node: 2, Seq: 90, Recent: true}, command.SiblingProgress{Node: 3, Seq: 80})},
		3: {1: {Server: 1, Role: command.RoleSibling, Epoch: 1, Applied: 97}},
	}
	got := buildStatus(statusInput{
		st: st, location: "default", leader: "c1", reports: reports,
		members: []raftMember{{ID: "c1", Addr: "r1"}, {ID: "c2", Addr: "r2"}},
		nodeState: func(n nodeRecord) (string, uint64) {
			return map[uint16]string{1: "up", 2: "up", 3: "down"}[n.ID], uint64(n.ID) * 10
		},
	})
	one := uint16(1)
	want := command.Status{
		Locations: []command.StatusLocation{{Name: "default", Controllers: []string{"c1", "c2"}}},
		Controllers: []command.StatusController{
			{ID: "c1", Addr: "h1", Location: "default", Leader: true},
			{ID: "c2", Addr: "", Location: "default"},
		},
		Nodes: []command.StatusNode{
			{ID: 1, Addr: "127.0.0.1:1", Location: "default", State: "up", Instance: "inst", Generation: 10},
			{ID: 2, Addr: "127.0.0.1:1", Location: "default", State: "up", Instance: "inst", Generation: 20},
			{ID: 3, Addr: "127.0.0.1:1", Location: "default", State: "down", Instance: "inst", Generation: 30},
		},
		Groups: []command.StatusGroup{
			{Server: 1, Main: &one, Epoch: 1, Seq: 100, Warning: twoVotersWarning, Siblings: []command.StatusSibling{
				{Node: 2, State: "voting", LagSeq: 10}, // main's view: the sibling did not report
				{Node: 3, State: "voting", LagSeq: 3},  // the sibling's own applied seq
			}},
			{Server: 2, Main: ptr(uint16(2)), Epoch: 1, Siblings: []command.StatusSibling{}},
			{Server: 3, Main: nil, Epoch: 1, Siblings: []command.StatusSibling{}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status\n got %+v\nwant %+v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusPageIsSelfContained(t *testing.T) {
	c := &Controller{}
	rec := httptest.NewRecorder()
	c.handlePage(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, "/v1/status") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Fatalf("page: code %d, references an external asset or not /v1/status", rec.Code)
	}
}
