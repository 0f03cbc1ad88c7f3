package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// adminTimeout is the default bound on an admin call: a registerSibling waits for a
// whole snapshot sync and replay, a drain for every group to move.
const adminTimeout = 10 * time.Minute

// adminOp is one admin subcommand of docs/protocol.md §3.
type adminOp struct {
	name       string // command-line name
	op         string // protocol op
	needServer bool
	summary    string
}

var adminOps = []adminOp{
	{"register-sibling", command.OpRegisterSibling, true, "add --node as a sibling of group --server (sync, record, replay, then voting)"},
	{"remove-sibling", command.OpRemoveSibling, true, "remove --node from the siblings of group --server"},
	{"promote", command.OpPromote, true, "hand the main role of group --server to its voting sibling --node"},
	{"drain", command.OpDrain, false, "move every main role and copy off --node, then mark it spare"},
	{"remove-node", command.OpRemoveNode, false, "take a drained, stopped --node out of the directory"},
}

func adminUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: sibyl admin <command> [flags]\n\ncommands:\n")
	for _, a := range adminOps {
		fmt.Fprintf(w, "  %-17s %s\n", a.name, a.summary)
	}
	fmt.Fprintf(w, "  %-17s %s\n", "rehome", "move group --server's home to --location (its home lost every controller)")
	fmt.Fprintf(w, "  %-17s %s\n", "role", "create, delete or list roles (grants of op kinds on types)")
	fmt.Fprintf(w, "  %-17s %s\n", "token", "create a token for a role (shown once) or revoke one")
	fmt.Fprintf(w, "  %-17s %s\n", "status", "print the cluster status")
}

func runAdmin(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		adminUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		adminUsage(stdout)
		return exitOK
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "rehome":
		return runAdminRehome(args[1:], stdout, stderr)
	case "role":
		return runAdminRole(args[1:], stdout, stderr)
	case "token":
		return runAdminToken(args[1:], stdout, stderr)
	}
	for _, a := range adminOps {
		if a.name == args[0] {
			return runAdminOp(a, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "sibyl admin: unknown command %q\n\n", args[0])
	adminUsage(stderr)
	return exitUsage
}

// adminOutput is what an admin call prints: the protocol's reply has no fields but ok.
type adminOutput struct {
	OK bool `json:"ok"`
}

func runAdminOp(a adminOp, args []string, stdout, stderr io.Writer) int {
	synopsis := "admin " + a.name + " --node M"
	if a.needServer {
		synopsis = "admin " + a.name + " --server N --node M"
	}
	fs := newFlagSet("admin "+a.name, synopsis, stderr)
	cf := addClientFlags(fs)
	fs.Lookup("timeout").DefValue = adminTimeout.String()
	*cf.timeout = adminTimeout
	var server *uint
	if a.needServer {
		server = fs.Uint("server", 0, "group (server ID) to act on (required)")
	}
	nodeID := fs.Uint("node", 0, "node (server ID) to act on (required)")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	if *nodeID < 1 || *nodeID > 65535 {
		return usageError(fs, stderr, "--node %d: want a server ID in 1..65535", *nodeID)
	}
	req := &command.Request{Op: a.op}
	n := int64(*nodeID)
	req.Node = &n
	if a.needServer {
		if *server < 1 || *server > 65535 {
			return usageError(fs, stderr, "--server %d: want a server ID in 1..65535", *server)
		}
		s := int64(*server)
		req.Server = &s
	}
	if a.op == command.OpRegisterSibling {
		return runWithProgress(cf, "admin "+a.name, req, stdout, stderr)
	}
	// Sent once: an admin op is not idempotent, so a retry after an unknown outcome is
	// the operator's decision.
	return call(cf, "admin "+a.name, stdout, stderr, func(ctx context.Context, c *client.Client) (adminOutput, error) {
		if _, err := c.Do(ctx, req); err != nil {
			return adminOutput{}, err
		}
		return adminOutput{OK: true}, nil
	})
}

// runAdminRehome moves a group's home to another location (docs/locations.md "Moving a
// home"): `sibyl admin rehome --server N --location LOC`.
func runAdminRehome(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin rehome", "admin rehome --server N --location LOC", stderr)
	cf := addClientFlags(fs)
	fs.Lookup("timeout").DefValue = adminTimeout.String()
	*cf.timeout = adminTimeout
	server := fs.Uint("server", 0, "group (server ID) whose home moves (required)")
	loc := fs.String("location", "", "location whose controllers take the group over (required)")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	if *server < 1 || *server > 65535 {
		return usageError(fs, stderr, "--server %d: want a server ID in 1..65535", *server)
	}
	if *loc == "" {
		return usageError(fs, stderr, "--location is required")
	}
	s := int64(*server)
	req := &command.Request{Op: command.OpRehome, Server: &s, Location: *loc}
	return call(cf, "admin rehome", stdout, stderr, func(ctx context.Context, c *client.Client) (adminOutput, error) {
		if _, err := c.Do(ctx, req); err != nil {
			return adminOutput{}, err
		}
		return adminOutput{OK: true}, nil
	})
}
