package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"testing"
	"time"
)

// env is a fake environment for parseArgs.
type env map[string]string

func (e env) lookup(name string) (string, bool) { v, ok := e[name]; return v, ok }

type testFlags struct {
	fs           *flag.FlagSet
	writeTimeout *time.Duration
	id           *uint
	loc          *string
	tokens       *listFlag
}

func newTestFlags() testFlags {
	fs := newFlagSet("test", "test", io.Discard)
	tf := testFlags{fs: fs, tokens: &listFlag{}}
	tf.writeTimeout = fs.Duration("write-timeout", 5*time.Second, "")
	tf.id = fs.Uint("id", 0, "")
	tf.loc = fs.String("location", "", "")
	fs.Var(tf.tokens, "token", "")
	return tf
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"write-timeout": "SIBYL_WRITE_TIMEOUT", "addr": "SIBYL_ADDR", "admin-token": "SIBYL_ADMIN_TOKEN",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestEnvAppliesAndFlagWins(t *testing.T) {
	e := env{"SIBYL_WRITE_TIMEOUT": "7s", "SIBYL_ID": "3", "SIBYL_LOCATION": "east", "SIBYL_TOKEN": "a,b"}

	tf := newTestFlags()
	if _, err := parseArgs(tf.fs, nil, e.lookup); err != nil {
		t.Fatal(err)
	}
	if *tf.writeTimeout != 7*time.Second || *tf.id != 3 || *tf.loc != "east" || !reflect.DeepEqual([]string(*tf.tokens), []string{"a", "b"}) {
		t.Errorf("from the environment: write-timeout %v id %d location %q tokens %v", *tf.writeTimeout, *tf.id, *tf.loc, *tf.tokens)
	}

	tf = newTestFlags()
	if _, err := parseArgs(tf.fs, []string{"--write-timeout", "2s", "--token", "c", "--token=d"}, e.lookup); err != nil {
		t.Fatal(err)
	}
	if *tf.writeTimeout != 2*time.Second {
		t.Errorf("write-timeout = %v, want the command line's 2s", *tf.writeTimeout)
	}
	// A repeatable flag given on the command line replaces the environment's list rather
	// than adding to it.
	if !reflect.DeepEqual([]string(*tf.tokens), []string{"c", "d"}) {
		t.Errorf("tokens = %v, want [c d]", *tf.tokens)
	}
	if *tf.id != 3 {
		t.Errorf("id = %d, want 3 from SIBYL_ID", *tf.id)
	}
}

func TestEnvBadValue(t *testing.T) {
	tf := newTestFlags()
	_, err := parseArgs(tf.fs, nil, env{"SIBYL_WRITE_TIMEOUT": "soon"}.lookup)
	var ee *envError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want an envError naming SIBYL_WRITE_TIMEOUT", err)
	}
	// A bad environment value under a flag given on the command line is never looked at.
	tf = newTestFlags()
	if _, err := parseArgs(tf.fs, []string{"--write-timeout=1s"}, env{"SIBYL_WRITE_TIMEOUT": "soon"}.lookup); err != nil {
		t.Errorf("err = %v, want none: the command line wins", err)
	}
}

func TestInterspersedPositionals(t *testing.T) {
	tf := newTestFlags()
	pos, err := parseArgs(tf.fs, []string{"RID1", "--id", "4", "RID2", "--", "--location", "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"RID1", "RID2", "--location", "x"}; !reflect.DeepEqual(pos, want) {
		t.Errorf("positionals = %q, want %q", pos, want)
	}
	if *tf.id != 4 || *tf.loc != "" {
		t.Errorf("id %d location %q: want 4 and none (after --)", *tf.id, *tf.loc)
	}
}

func TestHelpIsReported(t *testing.T) {
	tf := newTestFlags()
	if _, err := parseArgs(tf.fs, []string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("err = %v, want flag.ErrHelp", err)
	}
}

func TestParsePeers(t *testing.T) {
	got, err := parsePeers("c1=127.0.0.1:7751, c2=127.0.0.1:7752,c3=h:7753")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"c1": "127.0.0.1:7751", "c2": "127.0.0.1:7752", "c3": "h:7753"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsePeers = %v, want %v", got, want)
	}
	if s := formatPeers(got); s != "c1=127.0.0.1:7751,c2=127.0.0.1:7752,c3=h:7753" {
		t.Errorf("formatPeers = %q", s)
	}
	if empty, err := parsePeers(""); err != nil || len(empty) != 0 {
		t.Errorf("parsePeers(\"\") = %v, %v; want empty", empty, err)
	}
	for _, bad := range []string{"c1", "c1=", "=h:1", "c1=h:1,c1=h:2"} {
		if _, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q) succeeded, want an error", bad)
		}
	}
}

func TestControllerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7701": "127.0.0.1:7701", "http://h:7701": "h:7701", "http://h:7701/": "h:7701",
	} {
		if got, err := controllerAddr(in); err != nil || got != want {
			t.Errorf("controllerAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"h", "https://h:1", "h:1/x"} {
		if got, err := controllerAddr(bad); err == nil {
			t.Errorf("controllerAddr(%q) = %q, want an error", bad, got)
		}
	}
}

func TestLogLevel(t *testing.T) {
	for _, l := range []string{"debug", "info", "warn", "error"} {
		if _, err := newLogger(io.Discard, l); err != nil {
			t.Errorf("level %q: %v", l, err)
		}
	}
	if _, err := newLogger(io.Discard, "loud"); err == nil {
		t.Error("level loud accepted")
	}
}

func TestParseLocations(t *testing.T) {
	got, err := parseLocations(" loc2=127.0.0.1:7704, loc2=http://127.0.0.1:7705/ ,loc3=10.0.0.7:7707,,loc2=127.0.0.1:7704")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"loc2": {"127.0.0.1:7704", "127.0.0.1:7705"}, "loc3": {"10.0.0.7:7707"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if s := formatLocations(got); s != "loc2=127.0.0.1:7704,loc2=127.0.0.1:7705,loc3=10.0.0.7:7707" {
		t.Fatalf("format: %s", s)
	}
	for _, bad := range []string{"loc2", "=1.2.3.4:5", "loc2=", "loc2=nohost", "loc2=https://x:1/a"} {
		if _, err := parseLocations(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}
