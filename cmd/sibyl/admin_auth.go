package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// The role and token commands (docs/protocol.md §7):
//
//	sibyl admin role create --name NAME --grant TYPES=OPS [--grant ...]
//	sibyl admin role delete --name NAME
//	sibyl admin role list
//	sibyl admin token create --role ROLE [--ttl 24h]
//	sibyl admin token revoke TOKEN
//
// TYPES and OPS are comma-separated: --grant 'job,report*=read,subscribe'.

func roleUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: sibyl admin role create --name NAME --grant TYPES=OPS [--grant ...]\n"+
		"       sibyl admin role delete --name NAME\n"+
		"       sibyl admin role list\n\n"+
		"TYPES: comma-separated types or prefixes ending in * (\"*\": every type);\n"+
		"OPS: comma-separated among read, write, subscribe, ticket.\n"+
		"A role created again under its name gets the new grants; deleting a role revokes its tokens.\n")
}

func tokenUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: sibyl admin token create --role ROLE [--ttl DURATION]   (role %q: an admin token)\n"+
		"       sibyl admin token revoke TOKEN\n\n"+
		"create prints the token once: the cluster keeps only its hash.\n", command.AdminRole)
}

func runAdminRole(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		roleUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		roleUsage(stdout)
		return exitOK
	case "create":
		fs := newFlagSet("admin role create", "admin role create --name NAME --grant TYPES=OPS [--grant ...]", stderr)
		cf := addClientFlags(fs)
		name := fs.String("name", "", "role name, 1..64 characters of [a-zA-Z0-9_.-] (required)")
		var grants grantFlag
		fs.Var(&grants, "grant", "TYPES=OPS, e.g. 'job,report*=read,subscribe' (repeatable; at least one)")
		if code, ok := parseNoArgs(fs, args[1:], stderr); !ok {
			return code
		}
		req := &command.Request{Op: command.OpCreateRole, Name: *name, Grants: grants}
		if err := command.ValidateRequest(req); err != nil {
			return usageError(fs, stderr, "%s", err.Message)
		}
		return adminDo(cf, "admin role create", req, stdout, stderr, func(*command.Reply) any { return adminOutput{OK: true} })
	case "delete":
		fs := newFlagSet("admin role delete", "admin role delete --name NAME", stderr)
		cf := addClientFlags(fs)
		name := fs.String("name", "", "role to delete, with its tokens (required)")
		if code, ok := parseNoArgs(fs, args[1:], stderr); !ok {
			return code
		}
		if *name == "" {
			return usageError(fs, stderr, "--name is required")
		}
		req := &command.Request{Op: command.OpDeleteRole, Name: *name}
		return adminDo(cf, "admin role delete", req, stdout, stderr, func(*command.Reply) any { return adminOutput{OK: true} })
	case "list":
		fs := newFlagSet("admin role list", "admin role list", stderr)
		cf := addClientFlags(fs)
		if code, ok := parseNoArgs(fs, args[1:], stderr); !ok {
			return code
		}
		req := &command.Request{Op: command.OpListRoles}
		return adminDo(cf, "admin role list", req, stdout, stderr, func(r *command.Reply) any {
			roles := r.Roles
			if roles == nil {
				roles = []command.Role{}
			}
			return struct {
				Roles []command.Role `json:"roles"`
			}{roles}
		})
	}
	fmt.Fprintf(stderr, "sibyl admin role: unknown command %q\n\n", args[0])
	roleUsage(stderr)
	return exitUsage
}

func runAdminToken(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		tokenUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		tokenUsage(stdout)
		return exitOK
	case "create":
		fs := newFlagSet("admin token create", "admin token create --role ROLE [--ttl DURATION]", stderr)
		cf := addClientFlags(fs)
		role := fs.String("role", "", "role the token gets, or \"admin\" (required)")
		ttl := fs.Duration("ttl", 0, "lifetime of the token (0: it never expires)")
		if code, ok := parseNoArgs(fs, args[1:], stderr); !ok {
			return code
		}
		req := &command.Request{Op: command.OpCreateToken, Role: *role}
		if *ttl != 0 {
			ms := ttl.Milliseconds()
			req.TTLMs = &ms
		}
		if err := command.ValidateRequest(req); err != nil {
			return usageError(fs, stderr, "%s", err.Message)
		}
		return adminDo(cf, "admin token create", req, stdout, stderr, func(r *command.Reply) any {
			return struct {
				Token string `json:"token"`
				Role  string `json:"role"`
			}{r.Token, *role}
		})
	case "revoke":
		fs := newFlagSet("admin token revoke", "admin token revoke TOKEN", stderr)
		cf := addClientFlags(fs)
		pos, code, ok := parseOrExit(fs, args[1:], stderr)
		if !ok {
			return code
		}
		if len(pos) != 1 || pos[0] == "" {
			return usageError(fs, stderr, "give the token to revoke as the one argument")
		}
		req := &command.Request{Op: command.OpRevokeToken, Token: pos[0]}
		return adminDo(cf, "admin token revoke", req, stdout, stderr, func(*command.Reply) any { return adminOutput{OK: true} })
	}
	fmt.Fprintf(stderr, "sibyl admin token: unknown command %q\n\n", args[0])
	tokenUsage(stderr)
	return exitUsage
}

// parseNoArgs parses flags and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos), false
	}
	return exitOK, true
}

// adminDo sends one admin request once (admin ops are not idempotent) and prints what
// show makes of the reply.
func adminDo(cf clientFlags, name string, req *command.Request, stdout, stderr io.Writer, show func(*command.Reply) any) int {
	if *cf.timeout > time.Minute {
		*cf.timeout = time.Minute
	}
	return call(cf, name, stdout, stderr, func(ctx context.Context, c *client.Client) (any, error) {
		rep, err := c.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		return show(rep), nil
	})
}

// grantFlag is a repeatable --grant: each value one grant, TYPES=OPS (its commas belong
// to the lists, so it is not a listFlag).
type grantFlag []command.Grant

func (g *grantFlag) String() string {
	var parts []string
	for _, gr := range *g {
		parts = append(parts, strings.Join(gr.Types, ",")+"="+strings.Join(gr.Ops, ","))
	}
	return strings.Join(parts, " ")
}

func (g *grantFlag) Set(v string) error {
	gr, err := parseGrant(v)
	if err != nil {
		return err
	}
	*g = append(*g, gr)
	return nil
}

// parseGrant reads TYPES=OPS, each a comma-separated list.
func parseGrant(s string) (command.Grant, error) {
	types, ops, ok := strings.Cut(s, "=")
	if !ok {
		return command.Grant{}, fmt.Errorf("want TYPES=OPS, e.g. job,report*=read,subscribe")
	}
	return command.Grant{Types: splitList(types), Ops: splitList(ops)}, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
