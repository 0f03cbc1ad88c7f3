package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sibyl.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type testSettings struct {
	timeout             *time.Duration
	rate                *int64
	level, http, secret *string
	controllers         listFlag
	cfg                 *configFile
}

func testFlagSet() (*flag.FlagSet, *testSettings) {
	fs := newFlagSet("node", "node", io.Discard)
	s := &testSettings{
		timeout: fs.Duration("write-timeout", 5*time.Second, ""),
		rate:    fs.Int64("sync-rate", 100, ""),
		level:   fs.String("log-level", "info", ""),
		http:    fs.String("http", "", ""),
		secret:  fs.String("cluster-secret", "", ""),
	}
	fs.Var(&s.controllers, "controllers", "")
	s.cfg = addConfigFlag(fs)
	return fs, s
}

// Precedence is flag, then SIBYL_ variable, then the file, then the default; every source
// is recorded.
func TestConfigFilePrecedence(t *testing.T) {
	path := writeConfig(t, `
write-timeout = "2s"
sync_rate = 7
log-level = "debug"
http = "127.0.0.1:9"
controllers = ["127.0.0.1:7701", "127.0.0.1:7702"]
`)
	fs, s := testFlagSet()
	env := map[string]string{"SIBYL_LOG_LEVEL": "warn"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, err := parseArgs(fs, []string{"--config", path, "--http", "127.0.0.1:1"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *s.timeout != 2*time.Second || *s.rate != 7 || *s.level != "warn" || *s.http != "127.0.0.1:1" ||
		strings.Join(s.controllers, ",") != "127.0.0.1:7701,127.0.0.1:7702" {
		t.Fatalf("timeout %v rate %d level %s http %s controllers %v", *s.timeout, *s.rate, *s.level, *s.http, s.controllers)
	}
	want := map[string]string{"write-timeout": "file", "sync-rate": "file", "log-level": "env", "http": "flag",
		"controllers": "file", "cluster-secret": "default"}
	for k, v := range want {
		if got := s.cfg.source[k]; got != v {
			t.Errorf("source of %s: %s, want %s", k, got, v)
		}
	}
}

// A key that is no setting, or a value its flag refuses, fails the start and names it.
func TestConfigFileRefusesWhatItCannotSet(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`write-timout = "2s"`, `"write-timout" is not a setting`},
		{`write-timeout = "soon"`, "write-timeout"},
		{`sync-rate = "fast"`, "sync-rate"},
		{`config = "other.toml"`, `"config" is not a setting`},
		{`write-timeout = { a = 1 }`, "cannot set a flag"},
		{`write-timeout = "2s`, "config"},
	} {
		fs, _ := testFlagSet()
		_, err := parseArgs(fs, []string{"--config", writeConfig(t, tc.body)}, nil)
		var cerr *configError
		if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: %v; want a config error naming %q", tc.body, err, tc.want)
		}
	}
	fs, _ := testFlagSet()
	if _, err := parseArgs(fs, []string{"--config", filepath.Join(t.TempDir(), "missing.toml")}, nil); err == nil {
		t.Error("a missing config file was accepted")
	}
}

// The effective configuration is logged with each value's source, secrets masked.
func TestEffectiveConfigurationIsLogged(t *testing.T) {
	fs, _ := testFlagSet()
	path := writeConfig(t, `cluster-secret = "s3cret"`)
	if _, err := parseArgs(fs, []string{"--config", path, "--log-level", "debug"}, nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logEffective(zerolog.New(&buf), fs)
	out := buf.String()
	for _, want := range []string{`"cluster-secret":"(set) (file)"`, `"log-level":"debug (flag)"`, `"write-timeout":"5s (default)"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %s lacks %s", out, want)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the secret was logged: %s", out)
	}
}

// The example files in docs/config hold only settings the commands have, with values they
// accept: each is parsed by the real command, whose start is then stopped by a command-line
// flag (which wins over the file) that fails the checks after parsing.
func TestExampleConfigFilesParse(t *testing.T) {
	files, err := filepath.Glob("../../docs/config/*.toml")
	if err != nil || len(files) < 6 {
		t.Fatalf("example config files: %v (%d found, want a controller and a node file per location)", err, len(files))
	}
	for _, f := range files {
		var stderr bytes.Buffer
		var code int
		var want string
		if strings.Contains(filepath.Base(f), "node") {
			code, want = runNode([]string{"--config", f, "--id", "0"}, io.Discard, &stderr), "--id 0: want a server ID"
		} else {
			code, want = runLocation([]string{"--config", f, "--copy-timeout", "-1s"}, io.Discard, &stderr), "--copy-timeout -1s: must be positive"
		}
		first, _, _ := strings.Cut(stderr.String(), "\n")
		if code != exitUsage || !strings.Contains(first, want) {
			t.Errorf("%s: exit %d, first line %q; want it parsed and then %q", f, code, first, want)
		}
	}
}
