package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Roles and tokens through the controllers' admin endpoint: a created admin token is an
// admin token for the controllers too, a role's token is not, a revoked one is refused
// again; every controller's directory carries the hashes, never the tokens.
func TestControllerRoleAndTokenOps(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) { c.ClusterSecret, c.AdminTokens = testSecret, []string{testAdminToken} })
	admin := func(token, op string, req command.Request) (int, command.Code, command.Reply) {
		t.Helper()
		var status int
		var code command.Code
		var rep command.Reply
		eventuallyOK(t, 15*time.Second, op, func() error {
			lead := tc.leader(10 * time.Second)
			req.Op = op
			s, c, body, err := callAuth(http.MethodPost, lead.httpAddr, "/v1/internal/admin/"+op, testSecret, token, req)
			if err != nil || s == http.StatusMisdirectedRequest || s == http.StatusServiceUnavailable {
				return fmt.Errorf("HTTP %d %s %v", s, body, err)
			}
			status, code = s, c
			rep = command.Reply{}
			return json.Unmarshal(body, &rep)
		})
		return status, code, rep
	}
	grants := []command.Grant{{Types: []string{"job"}, Ops: []string{command.KindRead}}}
	if s, c, _ := admin(testAdminToken, command.OpCreateRole, command.Request{Name: "reader", Grants: grants}); s != http.StatusOK {
		t.Fatalf("createRole: HTTP %d %s", s, c)
	}
	for _, tc := range []struct {
		op   string
		req  command.Request
		want command.Code
	}{
		{command.OpCreateRole, command.Request{Name: "admin", Grants: grants}, command.CodeBadRequest},
		{command.OpCreateRole, command.Request{Name: "bad", Grants: []command.Grant{{Types: []string{"job"}, Ops: []string{"delete"}}}}, command.CodeBadRequest},
		{command.OpCreateToken, command.Request{Role: "nobody"}, command.CodeNotFound},
		{command.OpDeleteRole, command.Request{Name: "nobody"}, command.CodeNotFound},
		{command.OpRevokeToken, command.Request{Token: "never-made"}, command.CodeNotFound},
	} {
		if s, c, _ := admin(testAdminToken, tc.op, tc.req); c != tc.want {
			t.Errorf("%s %+v: HTTP %d %q, want %s", tc.op, tc.req, s, c, tc.want)
		}
	}
	_, _, rep := admin(testAdminToken, command.OpCreateToken, command.Request{Role: "reader"})
	reader := rep.Token
	_, _, rep = admin(testAdminToken, command.OpCreateToken, command.Request{Role: command.AdminRole})
	made := rep.Token
	if reader == "" || made == "" || reader == made {
		t.Fatalf("createToken replies: %q and %q", reader, made)
	}
	_, _, rep = admin(made, command.OpListRoles, command.Request{})
	if len(rep.Roles) != 1 || rep.Roles[0].Name != "reader" {
		t.Fatalf("listRoles with a created admin token: %+v", rep.Roles)
	}
	if s, c, _ := admin(reader, command.OpListRoles, command.Request{}); s != http.StatusUnauthorized || c != command.CodeUnauthorized {
		t.Fatalf("admin call with a reader token: HTTP %d %s, want 401 unauthorized", s, c)
	}
	// Every controller applies the hashes, and only the hashes.
	eventuallyOK(t, 10*time.Second, "the tokens on every controller", func() error {
		for _, ctl := range tc.running() {
			st, _ := ctl.c.fsm.view()
			if len(st.Tokens) != 2 {
				return fmt.Errorf("%s holds %d tokens", ctl.id, len(st.Tokens))
			}
			b, _ := json.Marshal(st.snapshotFile())
			if strings.Contains(string(b), reader) || strings.Contains(string(b), made) {
				return fmt.Errorf("%s stores a token in clear", ctl.id)
			}
		}
		return nil
	})
	if s, c, _ := admin(testAdminToken, command.OpRevokeToken, command.Request{Token: made}); s != http.StatusOK {
		t.Fatalf("revokeToken: HTTP %d %s", s, c)
	}
	if s, c, _ := admin(made, command.OpListRoles, command.Request{}); s != http.StatusUnauthorized || c != command.CodeUnauthorized {
		t.Fatalf("admin call with a revoked admin token: HTTP %d %s, want 401 unauthorized", s, c)
	}
}
