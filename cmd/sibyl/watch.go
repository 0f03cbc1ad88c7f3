package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

// The Go client does not dispatch events yet, so watch speaks the WebSocket protocol
// itself: one subscribe request, then every event frame printed as it comes.

// watchFrame is the part of a server frame watch looks at; the frame itself is printed.
type watchFrame struct {
	ID    *string         `json:"id"`
	OK    bool            `json:"ok"`
	Error *command.Error  `json:"error"`
	Sub   string          `json:"sub"`
	Event string          `json:"event"`
	Token json.RawMessage `json:"token"`
}

// subscribeFrame is the subscribe request.
type subscribeFrame struct {
	ID     string          `json:"id"`
	Op     string          `json:"op"`
	RID    string          `json:"rid,omitempty"`
	Server *int64          `json:"server,omitempty"`
	Type   string          `json:"type,omitempty"`
	From   json.RawMessage `json:"from,omitempty"`
}

func runWatch(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("watch", "watch (--rid R | --server N | --type T) [--from TOKEN]", stderr)
	addr := fs.String("addr", defaultAddr, "node to subscribe at, host:port")
	token := fs.String("token", "", "bearer token")
	rid := fs.String("rid", "", "events of this resource")
	server := fs.Uint("server", 0, "events of this group")
	typ := fs.String("type", "", "events of resources of this type, across groups")
	from := fs.String("from", "", "resume token of the last event seen: continue right after it")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	req := subscribeFrame{ID: "watch", Op: command.OpSubscribe, RID: *rid, Type: *typ}
	chosen := 0
	for _, set := range []bool{*rid != "", *server != 0, *typ != ""} {
		if set {
			chosen++
		}
	}
	if chosen != 1 {
		return usageError(fs, stderr, "give exactly one of --rid, --server, --type")
	}
	if *server != 0 {
		if *server > 65535 {
			return usageError(fs, stderr, "--server %d: want 1..65535", *server)
		}
		s := int64(*server)
		req.Server = &s
	}
	if *from != "" {
		// Tokens are opaque JSON values; a bare string on the command line is taken as a
		// JSON string when it is not JSON itself.
		if json.Valid([]byte(*from)) {
			req.From = json.RawMessage(*from)
		} else {
			b, _ := json.Marshal(*from)
			req.From = b
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := watch(ctx, *addr, *token, req, stdout, stderr); err != nil {
		return printFailure(stderr, "watch", err)
	}
	return exitOK
}

// watch subscribes and prints events, one compact JSON object per line, until ctx ends
// (nil) or the subscription or connection does (an error naming the last token, from
// which the caller can resume).
func watch(ctx context.Context, addr, token string, req subscribeFrame, stdout, stderr io.Writer) error {
	u := addr
	if !strings.Contains(u, "://") {
		u = "ws://" + u + "/v1/ws"
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, h)
	if resp != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("connect to %s: %w", u, err)
	}
	defer ws.Close()
	go func() {
		<-ctx.Done()
		ws.Close() // unblocks ReadMessage
	}()
	frame, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode subscribe request: %w", err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		return fmt.Errorf("send subscribe to %s: %w", u, err)
	}
	last := string(req.From)
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("connection to %s ended (%v); resume with --from '%s'", u, err, last)
		}
		var f watchFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("server sent a frame that is not JSON: %q", truncate(string(data), 120))
		}
		switch {
		case f.ID != nil && *f.ID == req.ID:
			if !f.OK {
				if f.Error == nil {
					return errors.New("subscribe failed without an error object")
				}
				return f.Error // e.g. bad_request when the server does not support subscriptions
			}
			last = string(f.Token)
			fmt.Fprintf(stderr, "subscribed at %s; token %s\n", addr, f.Token)
		case f.Sub == req.ID && f.Event != "":
			var line bytes.Buffer
			if err := json.Compact(&line, data); err != nil {
				return fmt.Errorf("event frame: %w", err)
			}
			fmt.Fprintf(stdout, "%s\n", line.Bytes())
			if len(f.Token) > 0 {
				last = string(f.Token)
			}
			if f.Event == "lagged" {
				return fmt.Errorf("subscription lagged (this reader was too slow) and ended; resume with --from '%s'", last)
			}
		case f.ID == nil && f.Error != nil:
			return f.Error
		}
	}
}
