package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestDevAuthCLI starts `sibyl dev --auth` and drives roles and tokens through the
// command line: dev generates an admin token and records it in cluster.json; a client
// without a token is refused; the admin makes a role and a token of it; that token may
// write its type and not another; once revoked it is refused.
func TestDevAuthCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "sibyl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const nodes, controllers = 2, 1
	base := freeBase(t, nodes, controllers)
	dir := t.TempDir()
	var devOut syncBuffer
	dev := exec.Command(bin, "dev", "--nodes", fmt.Sprint(nodes), "--controllers", fmt.Sprint(controllers),
		"--base-port", fmt.Sprint(base), "--data", dir, "--auth")
	dev.Stdout, dev.Stderr = &devOut, &devOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	devDone := make(chan error, 1)
	go func() { devDone <- dev.Wait() }()
	defer func() {
		dev.Process.Signal(syscall.SIGINT)
		select {
		case <-devDone:
		case <-time.After(20 * time.Second):
			dev.Process.Kill()
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", devOut.String())
		}
	}()
	clusterPath := filepath.Join(dir, "cluster.json")
	waitFor(t, 90*time.Second, "cluster.json", func() bool { _, err := os.Stat(clusterPath); return err == nil })
	cf, err := readClusterFile(clusterPath)
	if err != nil {
		t.Fatal(err)
	}
	if cf.Auth == nil || !strings.HasPrefix(cf.Auth.AdminToken, command.TokenPrefix) {
		t.Fatalf("cluster.json auth: %+v, want a generated admin token", cf.Auth)
	}
	adm := cf.Auth.AdminToken
	if !strings.Contains(devOut.String(), adm) {
		t.Fatal("dev did not print the admin token it generated")
	}
	addr := cf.Nodes[0].HTTP
	cli := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(append(args, "--addr", addr, "--timeout", "20s"), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := cli("create", "--type", "job", "--data", "1"); code != exitFail || !strings.Contains(out, "unauthorized") {
		t.Fatalf("create without a token: exit %d %s", code, out)
	}
	if code, out := cli("admin", "role", "create", "--token", adm, "--name", "app", "--grant", "job,report*=read,write"); code != exitOK {
		t.Fatalf("role create: exit %d %s", code, out)
	}
	if code, out := cli("admin", "role", "create", "--token", adm, "--name", "bad", "--grant", "job=delete"); code != exitUsage {
		t.Fatalf("role create with an unknown op: exit %d %s, want a usage error", code, out)
	}
	code, out := cli("admin", "role", "list", "--token", adm)
	if code != exitOK || !strings.Contains(out, `"report*"`) {
		t.Fatalf("role list: exit %d %s", code, out)
	}
	code, out = cli("admin", "token", "create", "--token", adm, "--role", "app")
	var made struct{ Token, Role string }
	if code != exitOK || json.Unmarshal([]byte(out), &made) != nil || !strings.HasPrefix(made.Token, command.TokenPrefix) {
		t.Fatalf("token create: exit %d %s", code, out)
	}
	// The token reaches the node with the directory; then it may write jobs, not docs, and
	// is no admin.
	waitFor(t, 10*time.Second, "the new token accepted", func() bool {
		code, _ := cli("list", "--token", made.Token, "--type", "job")
		return code == exitOK
	})
	if code, out := cli("admin", "token", "create", "--token", made.Token, "--role", "app"); code != exitFail || !strings.Contains(out, "forbidden") {
		t.Fatalf("token create with a client token: exit %d %s, want forbidden", code, out)
	}
	if code, out := cli("create", "--token", made.Token, "--type", "report.daily", "--data", `{"n":1}`); code != exitOK {
		t.Fatalf("create of a granted type: exit %d %s", code, out)
	}
	if code, out := cli("create", "--token", made.Token, "--type", "doc", "--data", "1"); code != exitFail || !strings.Contains(out, "forbidden") {
		t.Fatalf("create of another type: exit %d %s, want forbidden", code, out)
	}
	if code, out := cli("admin", "token", "revoke", "--token", adm, made.Token); code != exitOK {
		t.Fatalf("token revoke: exit %d %s", code, out)
	}
	revoked := time.Now()
	waitFor(t, 2*time.Second, "the revoked token refused", func() bool {
		code, out := cli("list", "--token", made.Token, "--type", "job")
		return code == exitFail && strings.Contains(out, "unauthorized")
	})
	t.Logf("dev --auth: admin token generated and recorded; role, token, write, refusal and revocation through the CLI (refused %v after revoke)",
		time.Since(revoked).Round(time.Millisecond))
}
