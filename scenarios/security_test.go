package scenarios

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// clusterModes are the configurations the failover, promotion, registration and drain
// scenarios run in: an open cluster; one as a cluster on an untrusted network runs, whose
// every process has the cluster secret and an admin token, whose clients have a token of a
// role that grants them their types only, and whose admin calls carry the admin token; and
// that one with TLS on every listener besides (dev --tls). The scenarios and their checks
// must pass in each.
var clusterModes = []struct {
	name string
	opts Options
}{
	{"open", Options{}},
	{"secured", Options{ClusterSecret: "scenario-s3cret", AdminToken: "scenario-adm1n", ClientRole: true}},
	{"tls", Options{ClusterSecret: "scenario-s3cret", AdminToken: "scenario-adm1n", ClientRole: true, TLS: true}},
}

// modeNamed returns the settings of the clusterModes entry called name.
func modeNamed(name string) Options {
	for _, m := range clusterModes {
		if m.name == name {
			return m.opts
		}
	}
	panic("no cluster mode " + name)
}

// withMode returns o with mode's security settings.
func withMode(o Options, mode Options) Options {
	o.ClusterSecret, o.AdminToken, o.ClientRole, o.TLS = mode.ClusterSecret, mode.AdminToken, mode.ClientRole, mode.TLS
	return o
}

// guardedCall sends one request with hc and returns its HTTP status and error code.
func guardedCall(hc *http.Client, method, url string, header http.Header, body any) (int, command.Code, error) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var eb struct {
		Error *command.Error `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	var code command.Code
	if eb.Error != nil {
		code = eb.Error.Code
	}
	return resp.StatusCode, code, nil
}

// checkGuarded asserts that a cluster run with a secret (and an admin token) refuses
// intruders with unauthorized on every kind of port: a controller's node protocol and
// admin calls, a node's internal endpoints (a seal, which would fence a group), and the
// client API; and that none of it changed the cluster. An open cluster is not checked.
func checkGuarded(t *testing.T, c *Cluster) {
	t.Helper()
	if c.secret == "" {
		return
	}
	before, err := c.Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	epochs := map[uint16]uint64{}
	for _, g := range before.Groups {
		epochs[g.Server] = g.Epoch
	}
	type probe struct {
		what, method, url string
		header            http.Header
		body              any
	}
	var probes []probe
	bad := []http.Header{{}, {command.SecretHeader: {"wrong"}}, {command.SecretHeader: {strings.ToUpper(c.secret)}}}
	for _, p := range c.Controllers {
		for _, h := range bad {
			probes = append(probes,
				probe{"join at " + p.Name(), http.MethodPost, c.URL(p, "/v1/internal/join"), h,
					command.JoinRequest{ID: 99, Addr: "127.0.0.1:1", Instance: "intruder", Incarnation: 1}},
				probe{"directory at " + p.Name(), http.MethodGet, c.URL(p, "/v1/internal/directory?after=0"), h, nil},
				probe{"suspect at " + p.Name(), http.MethodPost, c.URL(p, "/v1/internal/suspect"), h,
					command.Suspect{Node: 2, Server: 1, Main: 1}})
		}
		if c.adminToken != "" {
			// The right secret without the admin token is still no admin, nor is a
			// client's token.
			probes = append(probes, probe{"admin drain with a client token at " + p.Name(), http.MethodPost,
				c.URL(p, "/v1/internal/admin/drain"),
				http.Header{command.SecretHeader: {c.secret}, "Authorization": {"Bearer " + c.token}}, map[string]any{"op": "drain", "node": 1}})
			probes = append(probes, probe{"admin drain at " + p.Name(), http.MethodPost, c.URL(p, "/v1/internal/admin/drain"),
				http.Header{command.SecretHeader: {c.secret}, "Authorization": {"Bearer wrong"}}, map[string]any{"op": "drain", "node": 1}})
		}
	}
	for _, p := range c.Nodes {
		for _, h := range bad {
			probes = append(probes,
				probe{"seal at node " + p.Name(), http.MethodPost, c.URL(p, "/v1/internal/seal"), h,
					command.SealRequest{Server: 1, Epoch: 1 << 40, From: 1}},
				probe{"metrics at node " + p.Name(), http.MethodGet, c.URL(p, "/v1/internal/metrics"), h, nil})
		}
		if c.adminToken != "" {
			probes = append(probes, probe{"REST create at node " + p.Name(), http.MethodPost, c.URL(p, "/v1/resources"),
				http.Header{}, map[string]any{"type": "intruder", "data": 1}})
		}
	}
	for _, p := range probes {
		status, code, err := guardedCall(c.HTTP(), p.method, p.url, p.header, p.body)
		if err != nil || status != http.StatusUnauthorized || code != command.CodeUnauthorized {
			t.Errorf("%s with headers %v: HTTP %d %q %v, want 401 unauthorized", p.what, p.header, status, code, err)
		}
	}
	after, err := c.Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, n := range after.Nodes {
		if n.ID == 99 || n.State == command.NodeSpare {
			t.Errorf("refused calls changed the cluster: node %+v", n)
		}
	}
	for _, g := range after.Groups {
		if g.Epoch != epochs[g.Server] {
			t.Errorf("refused calls changed the cluster: group %d epoch %d, was %d", g.Server, g.Epoch, epochs[g.Server])
		}
	}
	t.Logf("%d intruder calls refused with unauthorized; nothing changed", len(probes))
}

// describeMode names a mode in logs.
func describeMode(o Options) string {
	switch {
	case o.ClusterSecret == "":
		return "open cluster"
	case o.TLS:
		return "TLS, cluster secret and admin token on every process, clients with a role's token"
	case o.ClientRole:
		return "cluster secret and admin token on every process, clients with a role's token"
	}
	return "cluster secret and admin token on every process"
}
