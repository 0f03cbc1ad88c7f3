package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/rs/zerolog"
)

// envPrefix is prepended to a flag's name to find its environment variable.
const envPrefix = "SIBYL_"

// envName is the environment variable that may set flag name: SIBYL_ + name upper-cased
// with dashes turned into underscores (write-timeout -> SIBYL_WRITE_TIMEOUT).
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet makes a flag set that reports errors instead of exiting, so that the caller
// chooses the exit code (2 for usage errors) and tests can run it.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: sibyl %s\n\nflags (each may also be set with %s<FLAG>):\n", synopsis, envPrefix)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses args into fs and returns the positional arguments. Flags may come
// before or after positionals (sibyl get RID --consistency sibling), which the standard
// parser alone does not allow: it stops at the first positional. Everything after "--" is
// positional. Then every flag not given on the command line is taken from its SIBYL_
// variable in env (lookup), so the command line always wins over the environment; and,
// for a command with --config, every flag still unset from that file (config.go).
func parseArgs(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// The parser consumed a "--" terminator when the argument before rest is one.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = "flag" })
	if err := applyEnv(fs, lookup); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if set[f.Name] == "" {
			set[f.Name] = "env"
		}
	})
	if c := configOf(fs); c != nil {
		if err := c.apply(fs, set); err != nil {
			return nil, err
		}
	}
	return positional, nil
}

// applyEnv sets every flag not set on the command line from its environment variable.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment %s=%q for flag --%s: %w", envName(f.Name), v, f.Name, err))
		}
	})
	if len(errs) > 0 {
		return &envError{errors.Join(errs...)}
	}
	return nil
}

// envError is a bad value in a SIBYL_ variable. The flag package prints its own parse
// errors; this kind the caller must print.
type envError struct{ err error }

func (e *envError) Error() string { return e.err.Error() }
func (e *envError) Unwrap() error { return e.err }

// listFlag is a repeatable flag whose values may also be comma-separated:
// --token a --token b and --token a,b mean the same. From the environment, the
// comma form is the only one (SIBYL_TOKEN=a,b).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// parsePeers parses --peers: ID=RAFTADDR entries separated by commas.
func parsePeers(s string) (map[string]string, error) {
	peers := map[string]string{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, addr, ok := strings.Cut(entry, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want ID=RAFTADDR (e.g. c1=127.0.0.1:7751)", entry)
		}
		if prev, dup := peers[id]; dup {
			return nil, fmt.Errorf("peer %s is given twice (%s and %s)", id, prev, addr)
		}
		peers[id] = addr
	}
	return peers, nil
}

// formatPeers is the inverse of parsePeers, in a stable order (dev writes it into args).
func formatPeers(peers map[string]string) string {
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id + "=" + peers[id]
	}
	return strings.Join(parts, ",")
}

// parseLocations parses --locations: NAME=HOST:PORT entries separated by commas, a name
// repeated once per controller of that location (loc2=10.0.0.4:7704,loc2=10.0.0.5:7705).
func parseLocations(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, addr, ok := strings.Cut(entry, "=")
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("location %q: want NAME=HOST:PORT (e.g. loc2=127.0.0.1:7704)", entry)
		}
		a, err := controllerAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("location %s: %v", name, err)
		}
		if !slices.Contains(out[name], a) {
			out[name] = append(out[name], a)
		}
	}
	return out, nil
}

// formatLocations is the inverse of parseLocations, in a stable order.
func formatLocations(locs map[string][]string) string {
	names := make([]string, 0, len(locs))
	for n := range locs {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		for _, a := range locs[n] {
			parts = append(parts, n+"="+a)
		}
	}
	return strings.Join(parts, ",")
}

// controllerAddr turns a --controllers entry (host:port or http://host:port/) into the
// host:port the node dials.
func controllerAddr(s string) (string, error) {
	a := strings.TrimSpace(s)
	a = strings.TrimPrefix(a, "http://")
	a = strings.TrimSuffix(a, "/")
	if strings.Contains(a, "://") || strings.Contains(a, "/") || !strings.Contains(a, ":") {
		return "", fmt.Errorf("controller %q: want host:port or http://host:port", s)
	}
	return a, nil
}

// newLogger makes the process logger: zerolog, JSON to w, one event per line.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	var lvl zerolog.Level
	switch strings.ToLower(level) {
	case "debug":
		lvl = zerolog.DebugLevel
	case "info", "":
		lvl = zerolog.InfoLevel
	case "warn", "warning":
		lvl = zerolog.WarnLevel
	case "error":
		lvl = zerolog.ErrorLevel
	default:
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// osEnv is the lookup of the real environment.
func osEnv(name string) (string, bool) { return os.LookupEnv(name) }
