package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// Exit codes: 0 success, 1 the command failed, 2 it was called wrongly.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// cmdFunc runs one subcommand with its arguments (after the subcommand's name).
type cmdFunc func(args []string, stdout, stderr io.Writer) int

type subcommand struct {
	name    string
	summary string
	run     cmdFunc
}

// commands lists the subcommands in the order usage shows them.
func commands() []subcommand {
	return []subcommand{
		{"dev", "start a local cluster (controllers and nodes) as child processes", runDev},
		{"node", "run a node", runNode},
		{"location", "run a location controller", runLocation},
		{"create", "create a resource", runCreate},
		{"get", "read a resource", runGet},
		{"update", "replace a resource's data", runUpdate},
		{"patch", "apply a JSON merge patch to a resource", runPatch},
		{"delete", "delete a resource", runDelete},
		{"list", "list resources", runList},
		{"watch", "subscribe to events and print them, one JSON object per line", runWatch},
		{"admin", "register-sibling, remove-sibling, promote, drain, remove-node, role, token, status", runAdmin},
		{"status", "print the cluster status (same as admin status)", runStatus},
		{"bench", "run a standard workload against a cluster and report throughput and latency", runBench},
	}
}

func main() {
	// Sub-second timestamps: events of a failover happen within milliseconds.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "sibyl: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: sibyl <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'sibyl <command> --help' for a command's flags. Every flag may also be set\n"+
		"from the environment as %s<FLAG> (upper case, dashes as underscores, e.g.\n"+
		"%s); the command line wins over the environment.\n", envPrefix, envName("write-timeout"))
}

// parseOrExit parses a subcommand's flags. It returns ok=false with the exit code to use
// when parsing ended the command: 0 after --help, 2 after a bad flag.
func parseOrExit(fs *flag.FlagSet, args []string, stderr io.Writer) (positional []string, code int, ok bool) {
	pos, err := parseArgs(fs, args, osEnv)
	if errors.Is(err, flag.ErrHelp) {
		return nil, exitOK, false
	}
	if err != nil {
		// The flag package already printed its own parse errors with the usage; errors
		// from the environment are ours to print.
		var envErr *envError
		var cfgErr *configError
		if errors.As(err, &envErr) || errors.As(err, &cfgErr) {
			fmt.Fprintf(stderr, "sibyl %s: %v\n", fs.Name(), err)
		}
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// usageError prints a usage problem of a subcommand and returns exit code 2.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "sibyl %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}
