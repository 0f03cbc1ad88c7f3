package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// Catching up: a subscription that starts from a token (or was detached) reads the entries
// after its position until it reaches its hub, then attaches. One goroutine per catching-up
// (subscription, group), only while it catches up; it pushes with flow control, so a slow
// consumer that catches up is slowed, never lagged.

// Resync pages: docs/protocol.md allows 1000 resources per resync event; the byte bound keeps a
// page of large resources under the 1 MiB frame size most clients use.
const (
	resyncPageItems = 1000
	resyncPageBytes = 1 << 20
)

// catchUp runs sg's catch-up until it attaches, goes pending or its subscription ends.
func (sg *subGroup) catchUp() {
	h, s := sg.hub, sg.sub
	n := h.m.n
	backoff := 20 * time.Millisecond
	verified, verifiedMode := false, hubMode(0)
	for {
		h.mu.Lock()
		if !sg.joined || s.isEnded() || n.ctx.Err() != nil {
			sg.working = false
			h.mu.Unlock()
			return
		}
		if h.tryAttachLocked(sg, sg.lastPos()) {
			h.mu.Unlock()
			return
		}
		resync := sg.resync
		sg.resync = false
		mode, hp := h.mode, h.pos
		h.mu.Unlock()
		if mode != verifiedMode {
			verified, verifiedMode = false, mode // a position is checked against the log it is read from
		}
		var err error
		if mode == hubLocal {
			err = sg.readLocal(hp, resync, &verified)
		} else {
			err = sg.readRemote(resync, &verified)
		}
		if err == nil {
			backoff = 20 * time.Millisecond
			continue
		}
		if resync {
			h.mu.Lock()
			sg.resync = true
			h.mu.Unlock()
		}
		n.log.Debug().Err(err).Uint16("group", uint16(sg.g)).Str("sub", s.id).Msg("subscription catch-up failed; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-s.done:
		case <-n.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(backoff*2, 2*time.Second)
	}
}

// readLocal reads entries after sg's position from this node's copy, up to hp (the hub's
// position, so committed and applied).
func (sg *subGroup) readLocal(hp position, resync bool, verified *bool) error {
	lg := sg.hub.m.n.localGroup(sg.g)
	if lg == nil {
		return fmt.Errorf("group %d: this node holds no copy any more", sg.g)
	}
	gs := lg.gs
	last := sg.lastPos()
	if !resync && !*verified {
		m, err := gs.Meta()
		if err != nil {
			return err
		}
		// The entry at the position must be in this log with the position's epoch, and the
		// entries after it must still be kept (docs/replication.md case 11).
		switch {
		case last.Seq+1 < m.FirstSeq:
			resync = true
		case last.Seq > 0 && m.EpochAt(last.Seq) != last.Epoch:
			sg.hub.m.n.log.Warn().Uint16("group", uint16(sg.g)).Str("token", last.String()).
				Uint64("epochHere", m.EpochAt(last.Seq)).Msg("resume position names an entry this copy does not hold; resync")
			resync = true
		}
	}
	if resync {
		at, res, err := snapshotGroup(gs, sg.sub.f)
		if err != nil {
			return err
		}
		*verified = true
		sg.pushResync(at, res)
		return nil
	}
	*verified = true
	if !hp.after(last) {
		return nil
	}
	es, err := gs.Entries(last.Seq+1, hp.Seq, 1<<20)
	if errors.Is(err, store.ErrCompacted) {
		sg.hub.mu.Lock()
		sg.resync = true
		sg.hub.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	views := make([]entryView, 0, len(es))
	for _, e := range es {
		eff, err := command.DecodeEffect(e.Data)
		if err != nil {
			return fmt.Errorf("group %d: entry %d: %w", sg.g, e.Seq, err)
		}
		views = append(views, viewOf(&store.AppliedEffect{Epoch: e.Epoch, Seq: e.Seq, Effect: eff}))
	}
	sg.process(views)
	return nil
}

// process queues the matching entries of views and moves sg past all of them. It returns
// false once the subscription ended.
func (sg *subGroup) process(views []entryView) bool {
	s := sg.sub
	stop := sg.hub.m.n.ctx.Done()
	now := time.Now()
	for i := range views {
		v := &views[i]
		if s.f.matches(v.kind, v.rid, v.typ) && s.allows(v.typ) {
			if !s.add(sg, qitem{ev: newEvent(sg.g, v, now)}, &v.pos, true, stop) {
				return false
			}
		}
	}
	if len(views) > 0 {
		s.advance(sg, views[len(views)-1].pos)
	}
	return true
}

// pushResync queues the resync set of one group, read at position at. Pages before the
// last carry the token from before the resync, so a consumer cut off in the middle
// resyncs again rather than continuing with half a set; the final page moves sg to at.
// A feed cannot resync (it has no filter to read a set for): it ends, and its follower
// resyncs its own subscriptions.
func (sg *subGroup) pushResync(at position, res []json.RawMessage) {
	s := sg.sub
	if s.f.kind == filterFeed {
		s.mu.Lock()
		s.endLocked(ctlFeedResync)
		s.mu.Unlock()
		return
	}
	if s.scope != nil {
		res = allowedResources(res, s)
	}
	pages := pageResources(res)
	for i, p := range pages {
		page := &resyncPage{group: sg.g, resources: p, final: i == len(pages)-1, at: at}
		var last *position
		if page.final {
			last = &at
		}
		if !s.add(sg, qitem{ctl: ctlResync, page: page}, last, true, sg.hub.m.n.ctx.Done()) {
			return
		}
	}
}

// allowedResources keeps the resources of res whose type s's caller may see.
func allowedResources(res []json.RawMessage, s *subscription) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(res))
	for _, r := range res {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(r, &head) == nil && s.allows(head.Type) {
			out = append(out, r)
		}
	}
	return out
}

// pageResources splits a resync set into pages; there is always at least one (an empty
// set is an empty final page).
func pageResources(res []json.RawMessage) [][]json.RawMessage {
	var pages [][]json.RawMessage
	start, size := 0, 0
	for i, r := range res {
		if i > start && (i-start >= resyncPageItems || size+len(r) > resyncPageBytes) {
			pages = append(pages, res[start:i])
			start, size = i, 0
		}
		size += len(r)
	}
	return append(pages, res[start:])
}

// snapshotGroup reads the committed state of every resource of gs that f matches, with the
// position it is the state at, in one read transaction (so state and position agree).
func snapshotGroup(gs store.GroupStore, f filter) (position, []json.RawMessage, error) {
	var at position
	var out []json.RawMessage
	err := store.Read(gs, func(v *store.View) error {
		at = position{Epoch: v.Meta.EpochAt(v.Meta.Applied), Seq: v.Meta.Applied}
		if f.kind == filterRID {
			if b := v.Resource(f.rid); b != nil {
				j, err := storedResourceJSON(f.rid, b)
				if err != nil {
					return err
				}
				out = append(out, j)
			}
			return nil
		}
		return v.EachResource(func(k, b []byte) (bool, error) {
			r, err := command.DecodeStoredResource(b)
			if err != nil {
				return false, fmt.Errorf("decode resource %q: %w", k, err)
			}
			if f.kind == filterType && r.Type != f.typ {
				return true, nil
			}
			j, err := json.Marshal(r)
			if err != nil {
				return false, fmt.Errorf("encode resource %q: %w", k, err)
			}
			out = append(out, j)
			return true, nil
		})
	})
	if err != nil {
		return position{}, nil, err
	}
	return at, out, nil
}

// storedResourceJSON is the JSON of the resource the store keeps under rid.
func storedResourceJSON(rid string, v []byte) (json.RawMessage, error) {
	r, err := command.DecodeStoredResource(v)
	if err != nil {
		return nil, fmt.Errorf("decode resource %q: %w", rid, err)
	}
	j, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode resource %q: %w", rid, err)
	}
	return j, nil
}
