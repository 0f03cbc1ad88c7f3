package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/tlsconf"
)

// readyPoll is how often dev checks whether the cluster serves yet.
const readyPoll = 100 * time.Millisecond

// waitReady polls until every node answers GET /healthz with 200, in every location a
// controller's GET /v1/status lists that location's nodes "up" and their groups with a
// main, and, with several locations, every location's GET /v1/locations shows every other
// one reachable with a leader. It fails when a child exits meanwhile (its log tail is in
// the error), at readyTimeout, or when ctx ends.
// With tlsConf it calls https, verified with it.
func waitReady(ctx context.Context, layout devLayout, secret string, tlsConf *tls.Config, exits <-chan childExit) error {
	hc := &http.Client{Timeout: time.Second, Transport: node.HTTPTransport(nil, tlsConf)}
	scheme := tlsconf.Scheme(tlsConf, "http")
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var missing string
	for {
		if missing = notReady(ctx, hc, scheme, layout, secret); missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("after %s still waiting: %s", readyTimeout, missing)
		case e := <-exits:
			return fmt.Errorf("%s (pid %d) %s during startup; last lines of %s:\n%s",
				e.c.name, e.c.pid(), describeExit(e.err), e.c.log, logTail(e.c.log, 10))
		case <-tick.C:
		}
	}
}

// notReady returns what the cluster still lacks, or "" when it is ready.
func notReady(ctx context.Context, hc *http.Client, scheme string, layout devLayout, secret string) string {
	for _, n := range layout.Nodes {
		if err := getJSON(ctx, hc, scheme+"://"+n.HTTP+"/healthz", "", nil); err != nil {
			return fmt.Sprintf("node %d health: %v", n.ID, err)
		}
	}
	names := layout.locationNames()
	for _, loc := range names {
		part := layout.inLocation(loc)
		var st command.Status
		var lastErr error
		got := false
		for _, c := range part.Controllers {
			if lastErr = getJSON(ctx, hc, scheme+"://"+c.HTTP+"/v1/status", secret, &st); lastErr == nil {
				got = true
				break
			}
		}
		if !got {
			return fmt.Sprintf("controller status of %s: %v", loc, lastErr)
		}
		if m := statusMissing(part, &st); m != "" {
			return m
		}
	}
	if len(names) < 2 {
		return ""
	}
	for _, loc := range names {
		if m := locationsMissing(ctx, hc, scheme, layout.inLocation(loc), names, secret); m != "" {
			return m
		}
	}
	return ""
}

// locationsMissing asks a controller of one location for GET /v1/locations and reports the
// locations of names it does not reach with a known leader.
func locationsMissing(ctx context.Context, hc *http.Client, scheme string, part devLayout, names []string, secret string) string {
	var lr command.LocationsReply
	var lastErr error
	for _, c := range part.Controllers {
		if lastErr = getJSON(ctx, hc, scheme+"://"+c.HTTP+"/v1/locations", secret, &lr); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return fmt.Sprintf("locations seen from %s: %v", part.Controllers[0].Location, lastErr)
	}
	var lacks []string
	for _, want := range names {
		ok := false
		for _, l := range lr.Locations {
			ok = ok || l.Name == want && l.Reachable && l.Leader != nil
		}
		if !ok {
			lacks = append(lacks, want)
		}
	}
	if len(lacks) > 0 {
		return fmt.Sprintf("%s does not yet reach %s", lr.Self.Name, strings.Join(lacks, ", "))
	}
	return ""
}

// statusMissing compares a status against the layout: every node up, every node's
// group with a main.
func statusMissing(layout devLayout, st *command.Status) string {
	nodes := map[uint16]string{}
	for _, n := range st.Nodes {
		nodes[n.ID] = n.State
	}
	groups := map[uint16]*uint16{}
	for _, g := range st.Groups {
		groups[g.Server] = g.Main
	}
	var lacks []string
	for _, n := range layout.Nodes {
		if s, ok := nodes[n.ID]; !ok {
			lacks = append(lacks, fmt.Sprintf("node %d not registered", n.ID))
		} else if s != "up" {
			lacks = append(lacks, fmt.Sprintf("node %d is %s", n.ID, s))
		}
		if m, ok := groups[uint16(n.ID)]; !ok {
			lacks = append(lacks, fmt.Sprintf("group %d not in the directory", n.ID))
		} else if m == nil {
			lacks = append(lacks, fmt.Sprintf("group %d has no main", n.ID))
		}
	}
	return strings.Join(lacks, "; ")
}

// getJSON GETs url (with the cluster secret, when set), wants 200 and decodes the body
// into out (unless out is nil).
func getJSON(ctx context.Context, hc *http.Client, url, secret string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if secret != "" {
		req.Header.Set(command.SecretHeader, secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}

// logTail returns the last n lines of a log file, for a startup failure message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
