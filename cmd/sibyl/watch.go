package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// watch subscribes through the Go client, which resumes by itself (from the last event's
// token) when its connection drops, on the next of the --addr nodes, or when the server
// ends the subscription with lagged; so the lines printed have no gap and no repeat for as
// long as the command runs.

func runWatch(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("watch", "watch (--rid R | --server N | --type T) [--from TOKEN]", stderr)
	addr := fs.String("addr", defaultAddr, "nodes to subscribe at, host:port (a comma-separated list is tried in order, and used on reconnects)")
	token := fs.String("token", "", "bearer token")
	rid := fs.String("rid", "", "events of this resource")
	server := fs.Uint("server", 0, "events of this group")
	typ := fs.String("type", "", "events of resources of this type, across groups")
	from := fs.String("from", "", "resume token of the last event seen: continue right after it")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on connecting and subscribing")
	tlsCA := fs.String("tls-ca", "", tlsCAUsage)
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	chosen := 0
	for _, set := range []bool{*rid != "", *server != 0, *typ != ""} {
		if set {
			chosen++
		}
	}
	if chosen != 1 {
		return usageError(fs, stderr, "give exactly one of --rid, --server, --type")
	}
	if *server > 65535 {
		return usageError(fs, stderr, "--server %d: want 1..65535", *server)
	}
	tlsConf, err := clientTLS(*tlsCA)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	f := client.Filter{RID: *rid, Server: command.ServerID(*server), Type: *typ}
	var addrs []string
	for _, a := range strings.Split(*addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := watch(ctx, client.Options{Addrs: addrs, Token: *token, RequestTimeout: *timeout, TLS: tlsConf}, f, strings.Trim(*from, `"`), stdout, stderr); err != nil {
		return printFailure(stderr, "watch", err)
	}
	return exitOK
}

// watch subscribes and prints events, one compact JSON object per line, until ctx ends
// (nil) or the subscription fails for good (an error naming the last token, from which
// the caller can resume).
func watch(ctx context.Context, opts client.Options, f client.Filter, from string, stdout, stderr io.Writer) error {
	dctx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
	defer cancel()
	c, err := client.Dial(dctx, opts)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", strings.Join(opts.Addrs, ","), err)
	}
	defer c.Close()
	sub, err := c.Subscribe(dctx, f, from)
	if err != nil {
		return err
	}
	defer sub.Close()
	fmt.Fprintf(stderr, "subscribed at %s; token %s\n", c.Addr(), sub.Token())
	var line bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.Events():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("subscription ended (%v); resume with --from '%s'", sub.Err(), sub.Token())
			}
			line.Reset()
			if err := json.Compact(&line, ev.Raw); err != nil {
				return fmt.Errorf("event frame is not JSON: %w", err)
			}
			line.WriteByte('\n')
			if _, err := stdout.Write(line.Bytes()); err != nil {
				return err
			}
		}
	}
}
