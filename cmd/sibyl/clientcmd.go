package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// defaultAddr is node 1 of a default dev cluster (base port 7700).
const defaultAddr = "127.0.0.1:7801"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	addr    *string
	token   *string
	timeout *time.Duration
	tlsCA   *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		addr:    fs.String("addr", defaultAddr, "node to talk to, host:port (a comma-separated list is tried in order)"),
		token:   fs.String("token", "", "bearer token (client or admin)"),
		timeout: fs.Duration("timeout", 30*time.Second, "bound on the whole command, retries included"),
		tlsCA:   fs.String("tls-ca", "", tlsCAUsage),
	}
}

func (f clientFlags) addrs() []string {
	var out []string
	for _, a := range strings.Split(*f.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// call dials, runs do, prints the reply as indented JSON on stdout, and turns a failure
// into "code: message" on stderr with exit code 1.
func call[T any](f clientFlags, name string, stdout, stderr io.Writer, do func(context.Context, *client.Client) (T, error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	tlsConf, err := clientTLS(*f.tlsCA)
	if err != nil {
		return printFailure(stderr, name, err)
	}
	c, err := client.Dial(ctx, client.Options{Addrs: f.addrs(), Token: *f.token, RequestTimeout: *f.timeout, TLS: tlsConf})
	if err != nil {
		return printFailure(stderr, name, fmt.Errorf("connect to %s: %w", *f.addr, err))
	}
	defer c.Close()
	out, err := do(ctx, c)
	if err != nil {
		return printFailure(stderr, name, err)
	}
	return printJSON(stdout, stderr, name, out)
}

// printFailure writes a protocol error as its code and message, anything else as is.
func printFailure(stderr io.Writer, name string, err error) int {
	var e *command.Error
	if errors.As(err, &e) {
		fmt.Fprintf(stderr, "sibyl %s: %s: %s\n", name, e.Code, e.Message)
	} else {
		fmt.Fprintf(stderr, "sibyl %s: %v\n", name, err)
	}
	return exitFail
}

func printJSON(stdout, stderr io.Writer, name string, v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return printFailure(stderr, name, fmt.Errorf("encode reply: %w", err))
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return exitOK
}

// jsonArg reads a JSON argument: inline, @FILE, or @- for stdin. It must be valid JSON.
func jsonArg(flagName, v string) (json.RawMessage, error) {
	b := []byte(v)
	if path, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if path == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(path)
		}
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", flagName, v, err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("--%s: %q is not valid JSON", flagName, truncate(string(b), 80))
	}
	return json.RawMessage(b), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// writeFlags are the options of update, patch and delete.
type writeFlags struct {
	ifVersion *uint64
	key       *string
	ticket    *uint64
}

func addWriteFlags(fs *flag.FlagSet) writeFlags {
	return writeFlags{
		ifVersion: fs.Uint64("if-version", 0, "only if the resource is at this version (0: any)"),
		key:       fs.String("key", "", "idempotency key (a repeat with the same key returns the first result)"),
		ticket:    fs.Uint64("ticket", 0, "fence of the live ticket, when one is held (0: none)"),
	}
}

func (w writeFlags) opts() []client.WriteOpt {
	var o []client.WriteOpt
	if *w.ifVersion != 0 {
		o = append(o, client.WithIfVersion(*w.ifVersion))
	}
	if *w.key != "" {
		o = append(o, client.WithKey(*w.key))
	}
	if *w.ticket != 0 {
		o = append(o, client.WithTicket(*w.ticket))
	}
	return o
}

// oneRID checks that a command got exactly one positional RID.
func oneRID(fs *flag.FlagSet, stderr io.Writer, pos []string) (string, int, bool) {
	if len(pos) != 1 {
		return "", usageError(fs, stderr, "want exactly one RID, got %d arguments", len(pos)), false
	}
	return pos[0], 0, true
}

func runCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("create", "create --type T --data JSON [--server N] [--key K]", stderr)
	cf := addClientFlags(fs)
	typ := fs.String("type", "", "resource type (required)")
	data := fs.String("data", "", "resource data: JSON, @FILE or @- (required)")
	server := fs.Uint("server", 0, "create in this group (0: let the client choose, as the node would)")
	key := fs.String("key", "", "idempotency key")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	if *typ == "" || *data == "" {
		return usageError(fs, stderr, "--type and --data are required")
	}
	if *server > 65535 {
		return usageError(fs, stderr, "--server %d: want 1..65535", *server)
	}
	raw, err := jsonArg("data", *data)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	var opts []client.WriteOpt
	if *server != 0 {
		opts = append(opts, client.WithServer(command.ServerID(*server)))
	}
	if *key != "" {
		opts = append(opts, client.WithKey(*key))
	}
	return call(cf, "create", stdout, stderr, func(ctx context.Context, c *client.Client) (*command.Reply, error) {
		return c.Create(ctx, *typ, raw, opts...)
	})
}

func runGet(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("get", "get RID [--consistency linearizable|sibling]", stderr)
	cf := addClientFlags(fs)
	consistency := fs.String("consistency", command.Linearizable, "linearizable or sibling")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	rid, code, ok := oneRID(fs, stderr, pos)
	if !ok {
		return code
	}
	if *consistency != command.Linearizable && *consistency != command.SiblingRead {
		return usageError(fs, stderr, "--consistency %q: want linearizable or sibling", *consistency)
	}
	return call(cf, "get", stdout, stderr, func(ctx context.Context, c *client.Client) (*command.Reply, error) {
		return c.Get(ctx, rid, *consistency)
	})
}

// runChange runs update or patch: RID plus a JSON flag plus the write options.
func runChange(op, jsonFlag, jsonHelp string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(op, op+" RID --"+jsonFlag+" JSON [--if-version N] [--key K] [--ticket F]", stderr)
	cf := addClientFlags(fs)
	body := fs.String(jsonFlag, "", jsonHelp)
	wf := addWriteFlags(fs)
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	rid, code, ok := oneRID(fs, stderr, pos)
	if !ok {
		return code
	}
	if *body == "" {
		return usageError(fs, stderr, "--%s is required", jsonFlag)
	}
	raw, err := jsonArg(jsonFlag, *body)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	return call(cf, op, stdout, stderr, func(ctx context.Context, c *client.Client) (*command.Reply, error) {
		if op == command.OpPatch {
			return c.Patch(ctx, rid, raw, wf.opts()...)
		}
		return c.Update(ctx, rid, raw, wf.opts()...)
	})
}

func runUpdate(args []string, stdout, stderr io.Writer) int {
	return runChange(command.OpUpdate, "data", "new data, replacing the old: JSON, @FILE or @- (required)", args, stdout, stderr)
}

func runPatch(args []string, stdout, stderr io.Writer) int {
	return runChange(command.OpPatch, "patch", "RFC 7386 JSON merge patch: JSON, @FILE or @- (required)", args, stdout, stderr)
}

func runDelete(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("delete", "delete RID [--if-version N] [--key K] [--ticket F]", stderr)
	cf := addClientFlags(fs)
	wf := addWriteFlags(fs)
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	rid, code, ok := oneRID(fs, stderr, pos)
	if !ok {
		return code
	}
	return call(cf, "delete", stdout, stderr, func(ctx context.Context, c *client.Client) (*command.Reply, error) {
		return c.Delete(ctx, rid, wf.opts()...)
	})
}

// listOutput always carries "resources", also when the page is empty.
type listOutput struct {
	Resources []command.Resource `json:"resources"`
	Next      string             `json:"next,omitempty"`
}

func runList(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("list", "list [--type T] [--server N] [--after RID] [--limit N]", stderr)
	cf := addClientFlags(fs)
	typ := fs.String("type", "", "only resources of this type")
	server := fs.Uint("server", 0, "only resources of this group (0: all)")
	after := fs.String("after", "", "start after this rid (the next of the previous page)")
	limit := fs.Int("limit", 0, "page size (0: server default 100, at most 1000)")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	if *server > 65535 {
		return usageError(fs, stderr, "--server %d: want 1..65535", *server)
	}
	return call(cf, "list", stdout, stderr, func(ctx context.Context, c *client.Client) (listOutput, error) {
		rep, err := c.List(ctx, client.ListOptions{Type: *typ, Server: command.ServerID(*server), After: *after, Limit: *limit})
		if err != nil {
			return listOutput{}, err
		}
		out := listOutput{Resources: rep.Resources, Next: rep.Next}
		if out.Resources == nil {
			out.Resources = []command.Resource{}
		}
		return out, nil
	})
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "status", stderr)
	cf := addClientFlags(fs)
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	return call(cf, "status", stdout, stderr, func(ctx context.Context, c *client.Client) (*command.Status, error) {
		return c.Status(ctx)
	})
}
