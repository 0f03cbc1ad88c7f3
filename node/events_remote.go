package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Catching up through a holder: a subscription of a group this node holds no copy of reads
// the entries after its position from a private feed of its own (the hub's shared feed is
// at the hub's position, usually ahead), and a resync set from a holder's snapshot. Both
// exist only while the subscription catches up.

// stallAfter: a private feed that brings nothing for this long while the hub is ahead is
// from a holder that does not progress (its main is gone, say); the catch-up moves on to
// the next holder.
const stallAfter = 3 * feedHeartbeat

// readRemote continues sg from its position through a private feed until it attaches,
// goes pending, needs a resync, or the feed fails.
func (sg *subGroup) readRemote(resync bool, _ *bool) error {
	h, s := sg.hub, sg.sub
	if resync {
		return sg.resyncRemote()
	}
	conn, _, err := h.m.dialFeed(sg.g, sg.lastPos(), false, sg.attempts)
	if err != nil {
		sg.attempts++
		return err
	}
	defer conn.Close()
	progressed := time.Now()
	for !s.isEnded() {
		f, err := readFeed(conn)
		if err != nil {
			sg.attempts++
			return fmt.Errorf("private feed of group %d: %w", sg.g, err)
		}
		if f.Resync {
			h.mu.Lock()
			sg.resync = true
			h.mu.Unlock()
			return nil
		}
		if len(f.Entries) > 0 {
			views := make([]entryView, len(f.Entries))
			for i := range f.Entries {
				views[i] = f.Entries[i].view()
			}
			if !sg.process(views) {
				return nil
			}
			progressed = time.Now()
		}
		h.mu.Lock()
		if h.mode != hubUpstream || !sg.joined {
			h.mu.Unlock()
			return nil // the loop in catchUp looks again
		}
		last := sg.lastPos()
		done := h.tryAttachLocked(sg, last)
		again := sg.resync
		behind := h.known && h.pos.after(last)
		h.mu.Unlock()
		if done || again {
			return nil
		}
		if behind && time.Since(progressed) > stallAfter {
			sg.attempts++
			return fmt.Errorf("private feed of group %d brings nothing while the group is at a later position", sg.g)
		}
	}
	return nil
}

// snapshotReply is the body of /v1/internal/snapshot.
type snapshotReply struct {
	At        position          `json:"at"`
	Resources []json.RawMessage `json:"resources"`
}

// resyncRemote reads sg's resync set from a holder and queues it.
func (sg *subGroup) resyncRemote() error {
	m := sg.hub.m
	addrs := m.holders(sg.g)
	if len(addrs) == 0 {
		return fmt.Errorf("group %d: no other node holds a copy to resync from", sg.g)
	}
	addr := addrs[sg.attempts%len(addrs)]
	q := url.Values{"group": {strconv.Itoa(int(sg.g))}, "kind": {strconv.Itoa(int(sg.sub.f.kind))}}
	switch sg.sub.f.kind {
	case filterRID:
		q.Set("value", sg.sub.f.rid)
	case filterType:
		q.Set("value", sg.sub.f.typ)
	}
	ctx, cancel := context.WithTimeout(m.n.ctx, m.n.cfg.WriteTimeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.n.peerURL("http", addr, "/v1/internal/snapshot?"+q.Encode()), nil)
	if err != nil {
		return err
	}
	req.Header = m.n.internalHeader()
	resp, err := m.n.peerHTTP.Do(req)
	if err != nil {
		sg.attempts++
		return fmt.Errorf("resync set of group %d from %s: %w", sg.g, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		sg.attempts++
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("resync set of group %d from %s: HTTP %d: %s", sg.g, addr, resp.StatusCode, b)
	}
	var rep snapshotReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		sg.attempts++
		return fmt.Errorf("resync set of group %d from %s: %w", sg.g, addr, err)
	}
	sg.pushResync(rep.At, rep.Resources)
	return nil
}

// serveSnapshot answers a resync set: ?group=G&kind=K[&value=V] (the rid or the type).
func (n *Node) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g, gerr := command.ParseServerID(q.Get("group"))
	if gerr != nil {
		http.Error(w, "bad group: "+gerr.Error(), http.StatusBadRequest)
		return
	}
	kind, err := strconv.Atoi(q.Get("kind"))
	if err != nil || kind < int(filterRID) || kind > int(filterType) {
		http.Error(w, fmt.Sprintf("bad filter kind %q", q.Get("kind")), http.StatusBadRequest)
		return
	}
	f := filter{kind: filterKind(kind), group: g}
	switch f.kind {
	case filterRID:
		f.rid = q.Get("value")
	case filterType:
		f.typ = q.Get("value")
	}
	lg := n.localGroup(g)
	if lg == nil {
		http.Error(w, fmt.Sprintf("node %d holds no copy of group %d", n.cfg.ID, g), http.StatusNotFound)
		return
	}
	at, res, err := snapshotGroup(lg.gs, f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if res == nil {
		res = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(snapshotReply{At: at, Resources: res})
}
