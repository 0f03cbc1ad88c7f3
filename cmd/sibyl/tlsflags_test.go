package main

import (
	"bytes"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/tlsconf"
)

// dev --tls gives every process its own certificate and key and the shared CA; without
// TLS no process is given any.
func TestDevGivesEveryProcessItsCertificate(t *testing.T) {
	l, err := layoutDev(7700, 3, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := writeDevTLS(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "tls", "ca.pem")
	if devCA(files) != ca {
		t.Fatalf("CA %s, want %s", devCA(files), ca)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: dir, WriteTimeout: time.Second, DownAfter: time.Second, LogLevel: "info", TLS: files}
	check := func(name string, args []string) {
		t.Helper()
		want := []string{"--tls-cert", filepath.Join(dir, "tls", name+".pem"), "--tls-key", filepath.Join(dir, "tls", name+"-key.pem"), "--tls-ca", ca}
		if !containsRun(args, want) {
			t.Errorf("%s args %q lack %q", name, args, want)
		}
		if _, err := tlsconf.Load(files[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, c := range l.Controllers {
		check(c.ID, l.controllerArgs(o, c))
	}
	for _, n := range l.Nodes {
		check(nodeName(n), nodeArgs(o, n))
	}
	o.TLS = nil
	for _, args := range [][]string{l.controllerArgs(o, l.Controllers[0]), nodeArgs(o, l.Nodes[0])} {
		if slices.Contains(args, "--tls-cert") || slices.Contains(args, "--tls-ca") {
			t.Errorf("args %q name TLS files without --tls", args)
		}
	}
}

// The TLS flags are set like every flag: from the command line, a SIBYL_ variable or the
// config file.
func TestTLSFlagsFromConfigAndEnvironment(t *testing.T) {
	fs := newFlagSet("node", "node", io.Discard)
	tf := addTLSFlags(fs)
	cfg := addConfigFlag(fs)
	path := writeConfig(t, "tls-cert = \"/etc/sibyl/n1.pem\"\ntls-key = \"/etc/sibyl/n1-key.pem\"\ntls-ca = \"/etc/sibyl/file-ca.pem\"\n")
	env := map[string]string{"SIBYL_TLS_CA": "/etc/sibyl/env-ca.pem"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, err := parseArgs(fs, []string{"--config", path, "--tls-key", "/flag/key.pem"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *tf.cert != "/etc/sibyl/n1.pem" || *tf.key != "/flag/key.pem" || *tf.ca != "/etc/sibyl/env-ca.pem" {
		t.Fatalf("cert %q key %q ca %q", *tf.cert, *tf.key, *tf.ca)
	}
	for k, v := range map[string]string{"tls-cert": "file", "tls-key": "flag", "tls-ca": "env"} {
		if cfg.source[k] != v {
			t.Errorf("source of %s: %s, want %s", k, cfg.source[k], v)
		}
	}
}

// A node or controller given half of a key pair, or a CA file that holds no certificate,
// refuses to start with a usage error that names the flag.
func TestServersRefuseIncompleteTLSFlags(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.WriteDev(dir, []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	base := map[string][]string{
		"node":     {"node", "--id", "1", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "n1"), "--controllers", "127.0.0.1:1"},
		"location": {"location", "--id", "c1", "--http", "127.0.0.1:0", "--raft", "127.0.0.1:0", "--data", filepath.Join(dir, "c1")},
	}
	for cmd, args := range base {
		for _, tc := range []struct {
			extra []string
			want  string
		}{
			{[]string{"--tls-cert", files["n1"].Cert}, "--tls-key"},
			{[]string{"--tls-key", files["n1"].Key}, "--tls-cert"},
			{[]string{"--tls-cert", files["n1"].Cert, "--tls-key", files["n1"].Key, "--tls-ca", files["n1"].Key}, "--tls-ca"},
		} {
			var stderr bytes.Buffer
			code := run(append(slices.Clone(args), tc.extra...), io.Discard, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("%s %q: exit %d, stderr %q; want a usage error naming %s", cmd, tc.extra, code, stderr.String(), tc.want)
			}
		}
	}
}
