package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/tlsconf"
)

// progressFrame is a frame of an admin call that reports progress: the reply (id) or a
// progress event (sub).
type progressFrame struct {
	ID       *string        `json:"id"`
	OK       bool           `json:"ok"`
	Error    *command.Error `json:"error"`
	Sub      string         `json:"sub"`
	Event    string         `json:"event"`
	Phase    string         `json:"phase"`
	Done     uint64         `json:"done"`
	Total    uint64         `json:"total"`
	Recorded uint64         `json:"recorded"`
}

// runWithProgress sends req on its own WebSocket and shows its progress events on stderr
// as they come (one line rewritten in place on a terminal, a line each otherwise), then
// prints the reply like any admin call.
func runWithProgress(f clientFlags, name string, req *command.Request, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	tlsConf, err := clientTLS(*f.tlsCA)
	if err != nil {
		return printFailure(stderr, name, err)
	}
	addr := f.addrs()[0]
	for _, scheme := range []string{"http://", "https://", "ws://", "wss://"} {
		addr = strings.TrimPrefix(addr, scheme)
	}
	h := http.Header{}
	if *f.token != "" {
		h.Set("Authorization", "Bearer "+*f.token)
	}
	d := *websocket.DefaultDialer
	d.TLSClientConfig = tlsConf
	ws, _, err := d.DialContext(ctx, tlsconf.Scheme(tlsConf, "ws")+"://"+addr+"/v1/ws", h)
	if err != nil {
		return printFailure(stderr, name, fmt.Errorf("connect to %s: %w", addr, err))
	}
	defer ws.Close()
	frame := struct {
		ID string `json:"id"`
		*command.Request
	}{ID: "admin", Request: req}
	if err := ws.WriteJSON(frame); err != nil {
		return printFailure(stderr, name, err)
	}
	live := isTerminal(stderr)
	for {
		if dl, ok := ctx.Deadline(); ok {
			ws.SetReadDeadline(dl)
		}
		var fr progressFrame
		if err := ws.ReadJSON(&fr); err != nil {
			return printFailure(stderr, name, fmt.Errorf("waiting for the reply: %w", err))
		}
		switch {
		case fr.Event == "progress" && fr.Sub == "admin":
			line := progressLine(fr)
			if live {
				fmt.Fprintf(stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(stderr, line)
			}
		case fr.ID != nil && *fr.ID == "admin":
			if live {
				fmt.Fprintln(stderr)
			}
			if !fr.OK {
				if fr.Error == nil {
					fr.Error = command.Errorf(command.CodeInternal, "failed without an error")
				}
				return printFailure(stderr, name, fr.Error)
			}
			return printJSON(stdout, stderr, name, adminOutput{OK: true})
		}
	}
}

// progressLine renders one progress event: a bar when the phase has a total.
func progressLine(fr progressFrame) string {
	unit := "entries"
	if fr.Phase == "sync" {
		unit = "bytes"
	}
	if fr.Total == 0 {
		return fmt.Sprintf("%-7s %s", fr.Phase, time.Now().Format("15:04:05"))
	}
	const width = 30
	filled := int(float64(width) * float64(fr.Done) / float64(fr.Total))
	filled = min(max(filled, 0), width)
	return fmt.Sprintf("%-7s [%s%s] %d/%d %s", fr.Phase, strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		fr.Done, fr.Total, unit)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
